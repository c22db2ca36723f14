"""Vision-language models: image parts through the template, image tokens without loss, a tiny Llava
trained with SFT and DPO on CPU, its export reproduced by plain transformers, and generation with images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steer import synth_vision
from steer.attributes import get_schema
from steer.errors import TemplateError, UsageError
from steer.templates import build_template, render_template

FAITHFULNESS_SPEARMAN = 0.2  # the fast visual quickstart's floor (it measured 0.34, level means 1.33 -> 2.28, seed 0)
MESSAGES = [{"role": "user", "content": [{"type": "image", "image": "x.png"}, {"type": "text", "text": "What colour?"}]}]


def _tiny_llava(folder: Path, shared: Path) -> Path:
    """A from-config Llava (a CLIP tower, a Llama) over the real stories260k tokenizer plus ``<image>``."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, set_seed

    from steer.vision import make_processor, scratch_spec

    processor = make_processor(AutoTokenizer.from_pretrained(str(shared / "models" / "stories260k")), folder)
    spec = scratch_spec("llava", processor)
    set_seed(0)
    model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory, shared_assets) -> Path:
    return _tiny_llava(tmp_path_factory.mktemp("llava"), shared_assets)


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vision")
    synth_vision.write(folder, 24, seed=0)
    synth_vision.write_pairs(folder, 16, seed=1)
    return folder


def test_image_parts_render_as_the_placeholder_in_python_and_in_the_template_alike():
    t = build_template("steerlm", schema=get_schema("vision")).with_image_token("<image>")
    ours = t.prompt(MESSAGES, attributes={"visual_faithfulness": 4})
    assert "<image>What colour?" in ours and "visual_faithfulness:4" in ours
    # the exported template flattens parts itself: plain transformers passes them as they are
    raw = render_template(t.source, MESSAGES, add_generation_prompt=True, steer_attributes={"visual_faithfulness": 4})
    assert raw == ours
    odd = [{"role": "user", "content": ["stray", {"type": "text"}, *MESSAGES[0]["content"]]}]
    assert t.prompt(odd, attributes={"visual_faithfulness": 4}) == ours  # parts content_text ignores, ignored alike
    text_only = build_template("steerlm", schema=get_schema("vision"))
    with pytest.raises(TemplateError, match="image parts"):
        text_only.prompt(MESSAGES)
    with pytest.raises(Exception, match="reads text only"):
        render_template(text_only.source, MESSAGES, add_generation_prompt=True)


def test_image_tokens_are_expanded_and_carry_no_loss(tiny_llava, vision_data):
    from steer.data.encode import IGNORE, encode_many
    from steer.data.loader import load
    from steer.vision import image_inputs

    vision = image_inputs(tiny_llava)
    assert vision is not None and vision.placeholder == "<image>"
    records = load(vision_data / "train.jsonl", format="steer")[0][:4]
    template = build_template("steerlm", schema=get_schema("vision")).with_image_token(vision.placeholder)
    tok = vision.processor.tokenizer
    [enc, *_] = encode_many(records, template, tok, vision=vision)
    runs = [i for i, t in enumerate(enc.input_ids) if t == vision.token_id]
    assert len(runs) == 17 and runs == list(range(runs[0], runs[0] + 17))  # 16 patches + CLS, contiguous
    assert all(enc.labels[i] == IGNORE for i in runs)
    assert enc.images and enc.images[0].endswith(".png")
    # the processor itself expands the same text to the same ids
    from steer import images

    text = template.training(records[0].chat())[0]
    out = vision.processor(text=[text], images=[images.load(records[0].messages[0].images[0])], add_special_tokens=False)
    assert out["input_ids"][0] == enc.input_ids
    # the collator refuses tokens prepared for another image (an image edited after preparation)
    from steer.errors import DataError
    from steer.train.packing import collator

    short = [t for t in enc.input_ids if t != vision.token_id][:40] + [vision.token_id] * 3
    with pytest.raises(DataError, match="prepare the data again"):
        collator(False, 0, vision)([{"input_ids": short, "labels": short, "images": enc.images}])
    # without the image inputs (a text model) the record is a counted reject; an overlong cut into the image too
    assert "image parts" in str(encode_many(records[:1], template, tok)[0])
    cut = encode_many(records[:1], template, tok, vision=vision, max_length=runs[0] + 5)[0]
    assert "cuts into an image" in str(cut)


def _recipe(kind: str, model: Path, data: Path, out: Path, **extra) -> dict:
    return {"kind": kind, "model": {"name_or_path": str(model)},
            "template": {"kind": "steerlm", "schema": "vision"},
            "data": {"sources": [{"path": str(data), "format": "steer"}], "packing": False, "max_length": 512,
                     "cache_dir": str(out / "cache")},
            "train": {"method": "lora", "epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "output_dir": str(out / kind),
                      "logging_steps": 1, "save_steps": 1000, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}, **extra}


def _greedy_plain(folder: Path, image, attrs: dict, new: int) -> list[int]:
    """Plain transformers on an exported folder: the processor's chat template, the processor, generate."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour are the shapes?"}]}],
                                         add_generation_prompt=True, tokenize=False, steer_attributes=attrs)
    inputs = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new, do_sample=False, tokenizer=processor.tokenizer)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_tiny_llava_trains_sft_and_dpo_and_its_export_reproduces_steers_greedy_output(tiny_llava, vision_data, tmp_path):
    from steer.config import validate_recipe
    from steer.engines.base import Sampling
    from steer.engines.hf import HFEngine
    from steer.steering import Steering, steering_prompt
    from steer.train import train
    from steer.train.export import export

    sft = train(validate_recipe(_recipe("sft", tiny_llava, vision_data / "train.jsonl", tmp_path), "sft", origin="test"))
    assert sft.steps >= 6 and (sft.run_dir / "processor_config.json").is_file()
    info = json.loads((sft.run_dir / "steer.json").read_text())
    assert info["template"]["image_token"] == "<image>"
    # the vision tower was frozen and carries no adapter: LoRA sits on the language model only
    adapter = json.loads((sft.run_dir / "adapter_config.json").read_text())
    assert adapter["target_modules"] and not any("vision" in m or "projector" in m for m in adapter["target_modules"])

    dpo = train(validate_recipe(_recipe("dpo", sft.run_dir, vision_data / "pairs.jsonl", tmp_path), "dpo", origin="test"))
    assert dpo.steps >= 4 and "rewards/accuracies" in json.dumps(dpo.metrics)

    image = synth_vision.draw({"colour": "red", "shape": "circle", "count": 2, "side": "left"})
    png = tmp_path / "q.png"
    image.save(png)
    engine = HFEngine.load(str(dpo.run_dir))
    assert engine.reads_images
    msgs = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "What colour are the shapes?"}]}]
    prompt = steering_prompt(engine.template, msgs, Steering(attributes={"visual_faithfulness": 4}))
    [ours] = engine.generate([prompt], Sampling(temperature=0, max_new_tokens=12))
    export(str(dpo.run_dir), tmp_path / "merged")
    plain = _greedy_plain(tmp_path / "merged", image, {"visual_faithfulness": 4}, 12)
    assert ours.token_ids and plain[: len(ours.token_ids)] == ours.token_ids
    # batched with a text-free second image equals one at a time
    other = tmp_path / "r.png"
    synth_vision.draw({"colour": "blue", "shape": "square", "count": 1, "side": "right"}).save(other)
    msgs2 = [{"role": "user", "content": [{"type": "image", "image": str(other)}, {"type": "text", "text": "Which shape is in the picture?"}]}]
    p2 = steering_prompt(engine.template, msgs2, Steering(attributes={"visual_faithfulness": 0, "verbosity": 2}))
    both = engine.generate([prompt, p2], Sampling(temperature=0, max_new_tokens=12))
    alone = engine.generate([p2], Sampling(temperature=0, max_new_tokens=12))
    assert [r.token_ids for r in both] == [ours.token_ids, alone[0].token_ids]


def test_a_text_engine_and_a_vlm_engine_on_image_parts(tiny_llava, tmp_path):
    from steer.engines.base import Sampling
    from steer.engines.hf import HFEngine
    from steer.steering import Steering, steering_prompt

    engine = HFEngine.load(str(tiny_llava), template="steerlm", schema="vision")
    png = tmp_path / "q.png"
    synth_vision.draw({"colour": "red", "shape": "circle", "count": 2, "side": "left"}).save(png)
    msgs = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "What colour?"}]}]
    [r] = engine.generate([steering_prompt(engine.template, msgs, Steering())], Sampling(temperature=0, max_new_tokens=3))
    assert r.prompt_tokens > 17
    streamed = list(engine.stream(steering_prompt(engine.template, msgs, Steering()), Sampling(temperature=0, max_new_tokens=3)))
    assert streamed[-1].token_ids == r.token_ids
    # two placeholders typed into the text and one image: one clear error
    bad = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "<image> twice"}]}]
    with pytest.raises(UsageError, match="2 image placeholders"):
        engine.generate([steering_prompt(engine.template, bad, Steering())], Sampling(temperature=0, max_new_tokens=2))
    missing = [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "nope.png")}, {"type": "text", "text": "hi"}]}]
    with pytest.raises(Exception, match="no such image file"):
        engine.generate([steering_prompt(engine.template, missing, Steering())], Sampling(temperature=0, max_new_tokens=2))


@pytest.fixture(scope="module")
def llava_engine(tiny_llava):
    from steer.engines.hf import HFEngine

    return HFEngine.load(str(tiny_llava), template="steerlm", schema="vision")


def _png(path: Path, colour: str = "red") -> Path:
    synth_vision.draw({"colour": colour, "shape": "circle", "count": 2, "side": "left"}).save(path)
    return path


def test_chat_attaches_images_with_slash_image(llava_engine, tmp_path):
    from steer.engines.base import Sampling
    from steer.generate.chat import ChatSession
    from steer.steering import Steering

    session = ChatSession(llava_engine, Steering(), Sampling(temperature=0, max_new_tokens=3))
    png = _png(tmp_path / "q.png")
    assert "1 image(s) attached" in session.command(f"/image {png}").text
    with pytest.raises(Exception, match="no such image file"):
        session.command(f"/image {tmp_path / 'nope.png'}")
    assert session.handle("What colour?").generate
    assert session.messages[-1]["content"][0] == {"type": "image", "image": str(png.resolve())}
    final = list(session.answer())[-1]
    assert final.prompt_tokens > 17 and session.images == []
    session.save(tmp_path / "chat.jsonl")  # the saved conversation loads back as an image record
    from steer.data.loader import load

    [record], _ = load(tmp_path / "chat.jsonl", format="steer")
    assert record.messages[0].images == [str(png.resolve())]
    text = ChatSession(type("E", (), {"template": None, "reads_images": False})(), Steering(), Sampling())
    with pytest.raises(UsageError, match="reads text only"):
        text.command(f"/image {png}")


def test_batch_rows_with_images_beside_the_input_file(llava_engine, tmp_path):
    from steer.engines.base import Sampling
    from steer.generate import batch

    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", "blue")
    rows = [{"id": "p", "prompt": "What colour?", "images": ["a.png"]},
            {"id": "m", "messages": [{"role": "user", "content": [{"type": "image", "image": "b.png"},
                                                                  {"type": "text", "text": "Which shape?"}]}]},
            {"id": "bad", "prompt": "What colour?", "images": ["missing.png"]}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = batch.run(llava_engine, path, tmp_path / "out.jsonl", Sampling(temperature=0, max_new_tokens=3))
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in out) == ["m", "p"] and report.errors == 1
    errors = batch.errors_path(tmp_path / "out.jsonl").read_text()
    assert "no such image file" in errors and "missing.png" in errors


def test_serve_a_vlm_accepts_inline_images_and_answers_as_the_engine_does(llava_engine, tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from steer.engines.base import Sampling
    from steer.serve.app import Server, create_app
    from steer.steering import Steering, steering_prompt

    png = _png(tmp_path / "q.png")
    url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    body = {"model": "tiny", "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": "What colour?"}]}]}
    with TestClient(create_app(Server(llava_engine, "tiny"))) as client:
        got = client.post("/v1/chat/completions", json=body)
        assert got.status_code == 200, got.text
        remote = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, {"type": "text", "text": "hi"}]}]})
        assert remote.status_code == 400 and "not fetched" in remote.text
    msgs = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "What colour?"}]}]
    [want] = llava_engine.generate([steering_prompt(llava_engine.template, msgs, Steering())],
                                   Sampling(temperature=0, max_new_tokens=4))
    assert got.json()["choices"][0]["message"]["content"] == want.text
    assert got.json()["usage"]["prompt_tokens"] == want.prompt_tokens > 17  # the image's tokens count


@pytest.mark.slow  # two CLI processes
def test_cli_generate_with_images(tiny_llava, shared_assets, tmp_path):
    from tests.conftest import run_cli

    png = _png(tmp_path / "q.png")
    out = run_cli("generate", str(tiny_llava), "What colour?", "--image", str(png), "--image", str(png), "--template",
                  "steerlm", "--schema", "vision", "--attr", "visual_faithfulness=4", "--temperature", "0",
                  "--max-new-tokens", "4", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["images"] == [str(png.resolve())] * 2 and got["prompt_tokens"] > 34
    text = run_cli("generate", str(shared_assets / "models" / "stories260k"), "hi", "--image", str(png), "--template",
                   "steerlm", "--max-new-tokens", "2")
    assert text.returncode == 2 and "reads text only" in text.stderr and "Traceback" not in text.stderr
    missing = run_cli("generate", str(tiny_llava), "hi", "--image", str(tmp_path / "nope.png"))
    assert missing.returncode == 2 and "no such image file" in missing.stderr


def test_vision_prompts_resolve_beside_their_file_and_the_oracle_judges_against_the_image(tmp_path):
    from steer.evaluate.judges import make_judge
    from steer.evaluate.steerability import read_prompts

    path = synth_vision.write_prompts(tmp_path, 3, seed=5)
    rows = read_prompts(str(path))
    image = rows[0]["messages"][0]["content"][0]["image"]
    assert Path(image).is_absolute() and Path(image).is_file()
    oracle, _ = make_judge("oracle")
    fact, asked = rows[0]["facts"], rows[0]["field"]
    faithful = synth_vision.respond(fact, asked, {"visual_faithfulness": 4, "verbosity": 2}, __import__("random").Random(0))
    wrong = synth_vision.respond(fact, asked, {"visual_faithfulness": 0, "verbosity": 2}, __import__("random").Random(0))
    assert oracle(rows[:1] * 2, [faithful, wrong]) == [{"visual_faithfulness": 4.0, "verbosity": 2},
                                                        {"visual_faithfulness": 0.0, "verbosity": 2}]
    Path(image).unlink()
    with pytest.raises(UsageError, match="no such image file"):
        read_prompts(str(path))


@pytest.mark.slow
def test_vision_quickstart_steers_visual_faithfulness_and_verbosity(tmp_path):
    """``steer quickstart --vision --fast``: a Llava trained from scratch; steering measured against each
    image's facts, through the quickstart and again through ``steer eval steerability`` on its prompts."""
    from tests.conftest import run_cli

    out = tmp_path / "qsv"
    result = run_cli("quickstart", "--vision", "--fast", "--out", str(out), "--json", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    faith, verbosity = report["attributes"]["visual_faithfulness"], report["attributes"]["verbosity"]
    assert verbosity["spearman"] >= 0.9, verbosity
    assert faith["spearman"] >= FAITHFULNESS_SPEARMAN, faith
    means = [lv["realised"] for lv in faith["levels"]]
    assert means[4] - means[0] >= 0.6, means
    assert (out / "steerability.png").is_file() and (out / "model" / "processor_config.json").is_file()
    again = run_cli("eval", "steerability", str(out / "model"), "--prompts", str(out / "data" / "prompts.jsonl"),
                    "--judge", "oracle", "--json", timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    # the same sweep through the command (other batches of the same greedy prompts)
    assert summary["attributes"]["verbosity"]["spearman"] == pytest.approx(verbosity["spearman"], abs=0.05)
    assert summary["attributes"]["visual_faithfulness"]["spearman"] == pytest.approx(faith["spearman"], abs=0.05)


# A chat template in the style of many vision-language models: content is read only as a list of parts
# (images first, then the text), so a string content would vanish.
PARTS_TEMPLATE = ("{% for m in messages %}{{ m['role'].upper() + ': ' }}"
                  "{% for p in m['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
                  "{% for p in m['content'] | selectattr('type', 'equalto', 'text') %}{{ p['text'] + ' ' }}{% endfor %}"
                  "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def test_steering_over_a_template_that_reads_only_parts():
    t = build_template("chat", schema=get_schema("vision"), base=PARTS_TEMPLATE).with_image_token("<image>")
    prompt = t.prompt([{"role": "system", "content": "Be careful."}, *MESSAGES], attributes={"verbosity": 0})
    assert prompt.startswith("SYSTEM: Be careful. USER: <image>\nWhat colour? ASSISTANT: ")
    assert prompt.endswith("ASSISTANT: <attributes>visual_faithfulness:4,verbosity:0</attributes>\n")
    convo = [*MESSAGES, {"role": "assistant", "content": "Red.", "attributes": {"verbosity": 1}}]
    text, [(a, b)] = t.training(convo)
    assert text == "USER: <image>\nWhat colour? ASSISTANT: <attributes>visual_faithfulness:4,verbosity:1</attributes>\nRed. "
    assert text[a:b] == "Red. "


def test_a_vlm_attribute_model_trains_on_images_and_scores_answers_about_them(tiny_llava, vision_data, tmp_path):
    """``steer train apm`` on a vision-language backbone: image tokens expanded, pixels per batch; the
    loaded scorer rates conversations with image parts, and its export does the same."""
    from steer.apm import Scorer
    from steer.config import validate_recipe
    from steer.train import train
    from steer.train.export import export

    recipe = _recipe("apm", tiny_llava, vision_data / "train.jsonl", tmp_path)
    recipe["train"]["epochs"] = 2
    recipe["data"]["validation_fraction"] = 0.25
    run = train(validate_recipe(recipe, "apm", origin="test"))
    assert run.steps >= 8 and "visual_faithfulness" in run.table
    scorer = Scorer.load(run.run_dir)
    assert scorer.vision is not None
    png = _png(tmp_path / "q.png")
    conv = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "What colour?"}]},
            {"role": "assistant", "content": "The shapes are red."}]
    raw = scorer.predict([conv, conv[:1] + [{"role": "assistant", "content": "The shapes are blue."}]])
    assert len(raw) == 2 and len(raw[0]) == 2 and raw[0] != raw[1]
    export(str(run.run_dir), tmp_path / "apm-export")
    assert Scorer.load(tmp_path / "apm-export").predict([conv])[0] == pytest.approx(raw[0], abs=1e-4)
    with pytest.raises(UsageError, match="no such image file"):
        scorer.predict([[{**conv[0], "content": [{"type": "image", "image": str(tmp_path / "gone.png")}]}, conv[1]]])


def test_a_task_without_images_and_packing_refuse_a_vlm_in_one_line(tiny_llava, vision_data, tmp_path):
    from steer.config import validate_recipe
    from steer.train import train

    packed = _recipe("sft", tiny_llava, vision_data / "train.jsonl", tmp_path)
    packed["data"]["packing"] = True
    with pytest.raises(UsageError, match="padded batches.*data.packing: false"):
        train(validate_recipe(packed, "sft", origin="test"))
    rm = _recipe("rm", tiny_llava, vision_data / "pairs.jsonl", tmp_path)
    with pytest.raises(UsageError, match="steer train rm does not train vision-language models yet"):
        train(validate_recipe(rm, "rm", origin="test"))
    frozen = _recipe("sft", tiny_llava, vision_data / "train.jsonl", tmp_path)
    frozen["model"]["freeze"] = ["no_such_module"]
    with pytest.raises(UsageError, match="model.freeze: no module is named"):
        train(validate_recipe(frozen, "sft", origin="test"))


def _tiny_qwen2_vl(shared: Path):
    """A from-config Qwen2-VL with its processor built in process: transformers' Qwen2-VL processor wants a
    video processor, which needs torchvision, which cannot load against this machine's CPU torch wheel."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, Qwen2VLProcessor, set_seed
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from steer.vision import PLACEHOLDERS, ImageInputs

    class NoVideo(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, name, arg):
            return None if arg is None else super().check_argument_for_proper_class(name, arg)

    tok = AutoTokenizer.from_pretrained(str(shared / "models" / "stories260k"))
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]})
    ip = Qwen2VLImageProcessorPil(min_pixels=32 * 32, max_pixels=32 * 32, patch_size=8, merge_size=2, temporal_patch_size=2)
    processor = NoVideo(image_processor=ip, tokenizer=tok, video_processor=None)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    config = AutoConfig.for_model(
        "qwen2_vl", image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        text_config={"model_type": "qwen2_vl_text", "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                     "max_position_embeddings": 512, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": 8,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3})
    set_seed(0)
    model = AutoModelForImageTextToText.from_config(config).eval()
    return model, processor, ImageInputs(processor, PLACEHOLDERS["qwen2_vl"], ids["<|image_pad|>"])


def test_qwen2_vl_through_steers_encoding_collator_and_engine_equals_its_processor(shared_assets, tmp_path):
    """Qwen2-VL (its placeholder, image grid and token types): steer's tokens equal the processor's, the
    training collator's loss is the model's on the processor's inputs, and the engine's greedy answers,
    batched or alone, equal ``generate`` on the processor's inputs."""
    import torch

    from steer.engines.base import Sampling
    from steer.engines.hf import HFEngine
    from steer.steering import Steering, steering_prompt
    from steer.train.packing import collator

    model, processor, vision = _tiny_qwen2_vl(shared_assets)
    template = build_template("steerlm", schema=get_schema("vision")).with_image_token(vision.placeholder)
    red, blue = _png(tmp_path / "red.png"), _png(tmp_path / "blue.png", "blue")
    msgs = [[{"role": "user", "content": [{"type": "image", "image": str(p)}, {"type": "text", "text": q}]}]
            for p, q in ((red, "What colour?"), (blue, "Which shape is in the picture?"))]
    prompts = [steering_prompt(template, m, Steering(attributes={"verbosity": v})) for m, v in zip(msgs, (0, 3))]
    from steer import images

    ref = [processor(text=[p.text], images=[images.load(p.images[0])], return_tensors="pt", add_special_tokens=False)
           for p in prompts]
    engine = HFEngine(model, processor.tokenizer, template, vision)
    ids, _ = engine._encode(prompts)
    assert [r["input_ids"][0].tolist() for r in ref] == ids
    # the training collator: the same loss as the model on the processor's own inputs
    feats = [{"input_ids": i, "labels": i, "images": [str(p.images[0])]} for i, p in zip(ids, prompts)]
    batch = collator(False, processor.tokenizer.pad_token_id or 0, vision)(feats[:1])
    with torch.no_grad():
        ours = model(**{k: v for k, v in batch.items()}).loss
        theirs = model(**ref[0], labels=ref[0]["input_ids"]).loss
    assert torch.allclose(ours, theirs, atol=1e-5)
    sampling = Sampling(temperature=0, max_new_tokens=6)
    alone = [engine.generate([p], sampling)[0].token_ids for p in prompts]
    assert [r.token_ids for r in engine.generate(prompts, sampling)] == alone
    with torch.no_grad():
        plain = model.generate(**ref[0], max_new_tokens=6, do_sample=False)[0, ref[0]["input_ids"].shape[1]:].tolist()
    assert plain[: len(alone[0])] == alone[0]


def test_data_inspect_shows_image_parts_as_the_placeholder(tiny_llava, vision_data):
    from steer.data.inspect import inspect

    plain = inspect(str(vision_data / "train.jsonl"), format="steer", template="steerlm", n=1)
    text = "".join(seg for seg, _ in plain.examples[0]["segments"])
    assert text.count("<image>") == 1 and "<image>" + json.loads((vision_data / "train.jsonl").read_text().splitlines()[0])["messages"][0]["content"][1]["text"] in text
    with_model = inspect(str(vision_data / "pairs.jsonl"), format="steer", template="steerlm", tokenizer=str(tiny_llava), n=1)
    chosen = with_model.examples[0]["sides"]["chosen"]
    assert any(seg == "<image>" and not loss for seg, loss in chosen["segments"]) and chosen["loss_tokens"] > 0


def test_a_text_scorer_judges_the_text_of_a_conversation_with_images(shared_assets, tmp_path):
    """A text reward or cost model (the guard of a server that serves a VLM) reads the conversation's
    text: image parts are left out, not an error."""
    from transformers import AutoModel

    from steer.apm import AttributeModel, Scorer
    from steer.runs import load_tokenizer

    folder = shared_assets / "models" / "stories260k"
    scorer = Scorer(AttributeModel(AutoModel.from_pretrained(str(folder)), ["cost"]).eval(), load_tokenizer(str(folder)),
                    build_template("steerlm", schema=None), kind="cost")
    png = _png(tmp_path / "q.png")
    with_image = [{"role": "user", "content": [{"type": "image", "image": str(png)}, {"type": "text", "text": "What colour?"}]},
                  {"role": "assistant", "content": "Red."}]
    text_only = [{"role": "user", "content": "What colour?"}, {"role": "assistant", "content": "Red."}]
    assert scorer.predict([with_image]) == scorer.predict([text_only])
