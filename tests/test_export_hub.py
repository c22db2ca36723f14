"""Sharing an export: the model card every kind gets (its code run as written), and ``--push-to-hub``
against a fake hub on localhost (tests/fake_hub.py: the bytes it received, the repo id, the private flag,
the token) with each failure as one line. Nothing here touches the network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from steer.errors import SteerError, UsageError
from tests import fixtures
from tests.conftest import invoke_cli
from tests.fake_hub import FakeHub

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}
CONVERSATION = [{"role": "user", "content": "Explain why the sky is blue."},
                {"role": "assistant", "content": "Air scatters blue light more than red."}]


@pytest.fixture(autouse=True)
def _no_real_hub(monkeypatch, tmp_path):
    """No test reaches the real hub or a token saved on this machine."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: a push not pointed at a fake fails
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])


def _python_block(text: str, marker: str) -> str:
    """The card's python code block that holds ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, blocks
    return found[0]


def _run_snippet(code: str, folder: Path) -> dict:
    """Run a card's snippet with ``model_id`` pointing at ``folder``; its namespace, what it printed in ``printed``."""
    line = f"model_id = {json.dumps(str(folder))}"
    code, n = re.subn(r'^model_id = ".*?"', lambda _: line, code, count=1, flags=re.MULTILINE)
    assert n == 1, code
    printed: list = []
    namespace: dict = {"print": printed.append}
    exec(compile(code, "card-snippet", "exec"), namespace)  # noqa: S102 - the card's own example, run as a user would
    namespace["printed"] = printed
    return namespace


# -- runs to export: one trained for real, the others built by hand (every kind, no training) ----------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_assets) -> Path:
    """A real two-step SFT run (SteerLM format, helpsteer schema) with its recipe and metrics."""
    from steer.config import validate_recipe
    from steer.train import train

    tmp = tmp_path_factory.mktemp("trained")
    data = fixtures.write(fixtures.helpsteer_rows() * 4, tmp / "hs.jsonl")
    raw = {"model": {"from_scratch": TINY, "tokenizer": str(shared_assets / "models/stories260k")},
           "data": {"sources": [{"path": str(data)}], "max_length": 512, "cache_dir": str(tmp / "cache")},
           "train": {"method": "full", "max_steps": 2, "batch_size": 4, "learning_rate": 3e-3, "save_steps": 2,
                     "logging_steps": 1, "seed": 7, "output_dir": str(tmp / "run")}}
    return train(validate_recipe(raw)).run_dir


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    from steer.train.export import export

    return export(trained_run, tmp_path_factory.mktemp("exported") / "tiny-steer")


def _tokenizer(shared: Path, fmt: str, schema, chat: bool = False):
    """The stories260k tokenizer whose chat template is the steering template ``fmt``."""
    from transformers import AutoTokenizer

    from steer.templates import for_tokenizer

    tok = AutoTokenizer.from_pretrained(str(shared / "models/stories260k"))
    if chat:  # a real chat template to wrap (the kind "chat" needs one)
        tok.chat_template = (shared / "tokenizers/llama3/chat_template.jinja").read_text()
    template = for_tokenizer(fmt, schema, tok)
    tok.chat_template = template.source
    return tok, template


def _hand_run(folder: Path, shared: Path, kind: str, fmt: str = "steerlm", schema_name: str | None = "helpsteer",
              extra: dict | None = None) -> Path:
    """A run directory of ``kind`` as training leaves it (full weights, tokenizer, steer.json, recipe), untrained."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    from steer import __version__
    from steer.apm import HEAD_FILE, AttributeModel, save_apm
    from steer.attributes import get_schema
    from steer.runs import write_run_file

    schema = get_schema(schema_name) if schema_name else None
    base = str(shared / "models/stories260k")
    scalar = kind in ("apm", "rm", "cost")
    tok, template = _tokenizer(shared, fmt, None if scalar else schema, chat=fmt == "chat")
    torch.manual_seed(0)
    if scalar:
        names = schema.names if kind == "apm" else [{"rm": "reward", "cost": "cost"}[kind]]
        save_apm(AttributeModel(AutoModel.from_pretrained(base), names), folder)
        extra = {"apm": {"head": HEAD_FILE, "schema": schema.to_dict()}} if kind == "apm" else \
            {kind: {"head": HEAD_FILE, "outputs": names, "axes": []}}
    else:
        AutoModelForCausalLM.from_pretrained(base).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    write_run_file(folder, {"steer_version": __version__, "kind": kind, "method": "full", "base_model": None,
                            "template": template.spec(), **(extra or {})})
    recipe = {"kind": kind, "model": {"name_or_path": base}, "template": {"kind": fmt, "schema": schema_name},
              "data": {"sources": [{"path": "nvidia/HelpSteer2", "format": "helpsteer"}], "max_length": 512},
              "train": {"method": "full", "learning_rate": 1e-4, "batch_size": 2, "grad_accum": 1, "seed": 1}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 1, "epoch": 0.5, "loss": 2.5}, {"step": 2, "epoch": 1.0, "eval_loss": 2.25, "eval_runtime": 0.1},
        {"step": 2, "epoch": 1.0, "train_loss": 2.4, "train_runtime": 1.0})))
    return folder


GENERATORS = {
    "sft-steerlm": ("sft", "steerlm", "helpsteer", None),
    "sft-janus-values": ("sft", "janus", None, None),
    "sft-chat": ("sft", "chat", "helpsteer", None),
    "dpo": ("dpo", "steerlm", "helpsteer", {"dpo": {"loss": "sigmoid", "beta": 0.1, "reference": "base"}}),
    "rl": ("rl", "steerlm", "safety", {"rl": {"algorithm": "grpo", "reward": "rm:/runs/rm", "cost": "cost:/runs/cost",
                                             "threshold": 0.0}}),
}


# -- the card ----------------------------------------------------------------------------------------

def test_the_card_of_a_trained_run_says_what_was_trained_and_its_example_steers(exported, trained_run):
    from steer.runs import load_tokenizer, model_template, read_metrics

    text = (exported / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert {"steer", "steerlm", "sft"} <= set(meta["tags"])
    assert "base_model" not in meta and "license" not in meta  # from scratch: no base, no license to inherit
    steps = max(r["step"] for r in read_metrics(trained_run))
    assert re.search(rf"\| steps \| {steps} \([\d.]+ epochs, [\d,]+ tokens\) \|", text)
    assert "from scratch (a `llama` configuration)" in text
    assert "| data | `hs.jsonl`; max length 512 tokens |" in text
    assert str(trained_run.parent) not in text  # local paths: by name only
    for name, lo_hi, default in (("verbosity", "0-4", 2), ("helpfulness", "0-4", 4)):
        assert f"| `{name}` | {lo_hi} | {default} |" in text
    assert "| `concise` | verbosity=0 |" in text and "`funny`" not in text  # presets that fit the schema only
    assert "vllm serve ./tiny-steer" in text and '"chat_template_kwargs"' in text and 'stop=["<extra_id_1>"]' in text

    ran = _run_snippet(_python_block(text, "AutoModelForCausalLM"), exported)
    template = model_template(load_tokenizer(str(exported)), json.loads((exported / "steer.json").read_text()))
    assert ran["prompt"] == template.prompt([CONVERSATION[0]], attributes={"verbosity": 0, "complexity": 4})
    assert "verbosity:0" in ran["prompt"] and "complexity:4" in ran["prompt"]
    assert isinstance(ran["answer"], str) and "<extra_id_1>" not in ran["answer"] and len(ran["printed"]) == 1


@pytest.mark.parametrize("case", list(GENERATORS))
def test_every_generator_kind_gets_a_card_whose_transformers_example_renders_steers_prompt(case, tmp_path,
                                                                                          shared_assets):
    from steer.runs import load_tokenizer, model_template
    from steer.train.export import export

    kind, fmt, schema, extra = GENERATORS[case]
    out = export(_hand_run(tmp_path / "run", shared_assets, kind, fmt, schema, extra), tmp_path / "out",
                 repo_id="me/model")
    text = (out / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["pipeline_tag"] == "text-generation" and kind in meta["tags"]
    assert meta["datasets"] == ["nvidia/HelpSteer2"]
    assert "| steps | 2 (1 epoch) |" in text and "| training loss | 2.4 (mean over the run) |" in text
    assert "| data | `nvidia/HelpSteer2` (format helpsteer); max length 512 tokens |" in text
    assert "loss 2.25" in text and "runtime" not in text and "`stories260k`" in text
    assert 'model_id = "me/model"' in text and "vllm serve me/model --served-model-name model" in text
    if kind == "rl":
        assert "reward `rm:rm`, cost `cost:cost` under threshold 0.0" in text and "/runs/" not in text
        assert "| `harmlessness` | 0-3 | 3 |" in text and "| `safe` | harmlessness=3 |" in text
    if kind == "dpo":
        assert "`sigmoid`, beta 0.1" in text
    if schema is None:
        assert "no attribute schema" in text and "steer_values=" in text and "## Presets" not in text
    ran = _run_snippet(_python_block(text, "AutoModelForCausalLM"), out)
    template = model_template(load_tokenizer(str(out)), json.loads((out / "steer.json").read_text()))
    from steer.train.card import example_attributes

    steering = {"values": ["I am a busy expert: be brief and precise."]} if schema is None else \
        {"attributes": example_attributes(template.schema)}
    assert ran["prompt"] == template.prompt([CONVERSATION[0]], **steering)
    assert isinstance(ran["answer"], str)


@pytest.mark.parametrize("kind", ["apm", "rm", "cost"])
def test_a_scalar_head_card_says_how_to_score_and_its_example_scores_as_steer_does(kind, tmp_path, shared_assets):
    from steer.apm import Scorer
    from steer.train.export import export

    out = export(_hand_run(tmp_path / "run", shared_assets, kind), tmp_path / "out")
    text = (out / "README.md").read_text()
    meta = _front_matter(text)
    assert "pipeline_tag" not in meta and meta["library_name"] == "transformers"
    assert {"steer", "steerlm"} <= set(meta["tags"])
    assert "does not generate" in text and "AutoModelForCausalLM" not in text and "vllm serve" not in text
    assert "## Scoring" in text and "apm_head.safetensors" in text
    ran = _run_snippet(_python_block(text, "AutoModel,"), out)
    scorer = Scorer.load(out, kinds=(kind,), device="cpu")
    [raw] = scorer.predict([CONVERSATION])
    assert ran["scores"].tolist() == pytest.approx(raw, abs=1e-4)
    [shown] = ran["printed"]
    expected = scorer.score([CONVERSATION])[0]
    assert shown == expected if kind == "apm" else shown == pytest.approx(expected, abs=1e-4)


def test_a_vision_language_models_card_example_places_the_image_and_steers(tmp_path, shared_assets, monkeypatch):
    """A tiny Llava run (built, not trained): its card's processor example renders steer's prompt and generates."""
    from transformers import AutoProcessor

    from steer import __version__, synth_vision
    from steer.attributes import get_schema
    from steer.runs import write_run_file
    from steer.templates import for_tokenizer
    from steer.train.export import export
    from tests.test_vlm import _tiny_llava

    run = _tiny_llava(tmp_path / "run", shared_assets)
    processor = AutoProcessor.from_pretrained(str(run))
    template = for_tokenizer("steerlm", get_schema("vision"), processor.tokenizer).with_image_token("<image>")
    processor.chat_template = processor.tokenizer.chat_template = template.source
    processor.save_pretrained(str(run))
    write_run_file(run, {"steer_version": __version__, "kind": "sft", "method": "full", "base_model": None,
                         "template": template.spec()})
    out = export(run, tmp_path / "vlm", repo_id="me/vlm")
    text = (out / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["pipeline_tag"] == "image-text-to-text" and "vision" in meta["tags"]
    assert '"type": "image_url"' in text and "vllm serve me/vlm" in text
    monkeypatch.chdir(tmp_path)  # the example opens picture.png
    synth_vision.draw({"colour": "red", "shape": "circle", "count": 2, "side": "left"}).save(tmp_path / "picture.png")
    ran = _run_snippet(_python_block(text, "AutoProcessor"), out)
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}]
    assert ran["prompt"] == template.prompt(parts, attributes={"verbosity": 0})
    assert "<image>" in ran["prompt"] and isinstance(ran["answer"], str)


def test_the_card_names_a_hub_base_its_license_and_the_runs_in_between(tmp_path):
    from steer.train.card import base_model, card

    pulled = tmp_path / "models" / "smol"
    pulled.mkdir(parents=True)
    (pulled / "steer-model.json").write_text(json.dumps({"alias": "smol", "license": "Apache-2.0"}))
    sft = tmp_path / "sft-run"
    sft.mkdir()
    (sft / "steer.json").write_text(json.dumps({"kind": "sft", "base_model": str(pulled)}))
    info = {"kind": "dpo", "method": "lora", "base_model": str(sft), "template": {"kind": "steerlm", "schema": None}}
    out = tmp_path / "out"
    out.mkdir()
    assert base_model(info, {}) == (str(pulled), ["a steer sft run (`sft-run`)"])
    text = card(out, tmp_path / "dpo-run", info)
    meta = _front_matter(text)
    assert meta["license"] == "apache-2.0" and "base_model" not in meta and "lora" in meta["tags"]
    assert "`smol`, through a steer sft run (`sft-run`)" in text and "merged into the base weights" in text
    snapshot = "/home/u/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/abc123"
    meta = _front_matter(card(out, tmp_path, {**info, "base_model": snapshot}))
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M" and "license" not in meta
    meta = _front_matter(card(out, tmp_path, {**info, "base_model": "Qwen/Qwen2.5-0.5B"}))
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B"


# -- pushing -------------------------------------------------------------------------------------------

def test_export_push_to_hub_uploads_every_file_with_its_bytes_privately_with_the_token(trained_run, tmp_path):
    out = tmp_path / "pushed"
    with FakeHub({"hf_test": "me"}) as hub:
        proc = invoke_cli("export", str(trained_run), "-o", str(out), "--push-to-hub", "me/tiny-steer", "--private",
                          "--token", "hf_test", env={"HF_ENDPOINT": hub.url})
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"pushing {out} to {hub.url}/me/tiny-steer ..."]
        repo = f"{hub.url}/me/tiny-steer"
        assert f"pushed: {repo}  ({len(_files(out))} files to branch main; commit {repo}/commit/" in proc.stdout
        assert list(hub.repos) == ["me/tiny-steer"] and hub.repos["me/tiny-steer"].private is True
        assert hub.files("me/tiny-steer") == _files(out)  # every file, byte for byte (README.md, weights, tokenizer)
        assert {"README.md", "steer.json", "recipe.yaml", "model.safetensors", "config.json"} <= set(_files(out))
        assert hub.seen and all(s.headers.get("authorization") == "Bearer hf_test" for s in hub.seen)
        assert hub.yaml_checked == [(out / "README.md").read_text()]  # the hub checked the card's front matter
        assert hub.repos["me/tiny-steer"].commits[0]["header"]["summary"] == "Upload pushed with steer"
    assert 'model_id = "me/tiny-steer"' in (out / "README.md").read_text()


def test_push_sends_large_files_through_lfs_to_a_branch_and_again_to_an_existing_repo(exported, monkeypatch, capfd):
    import huggingface_hub.constants as hub_constants

    from steer.train.export import push

    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)  # the LFS protocol, as without hf_xet
    with FakeHub({"hf_test": "me"}, lfs_from=4096) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        pushed = push(exported, "me/tiny", revision="dev", commit_message="first")
        assert pushed.url == f"{hub.url}/me/tiny" and pushed.revision == "dev" and pushed.files == len(_files(exported))
        assert hub.files("me/tiny", "dev") == _files(exported) and hub.files("me/tiny") == {}
        assert (exported / "model.safetensors").stat().st_size >= 4096
        assert any(s.method == "PUT" and s.path.startswith("/lfs/") for s in hub.seen)  # the weights went by LFS
        assert hub.repos["me/tiny"].private is False
        again = push(exported, "tiny", commit_message="second")  # a bare name: the token's namespace; exists: fine
        assert again.repo_id == "me/tiny" and hub.files("me/tiny") == _files(exported)
        assert [c["header"]["summary"] for c in hub.repos["me/tiny"].commits] == ["first", "second"]
    assert capfd.readouterr() == ("", "")  # the library printed nothing (no progress bars)


def test_a_refused_token_is_one_line_naming_the_repo_and_the_token_with_exit_2_before_exporting(trained_run, tmp_path):
    with FakeHub({"hf_good": "me", "hf_reader": "me"}, read_only=("hf_reader",)) as hub:
        proc = invoke_cli("export", str(trained_run), "-o", str(tmp_path / "out"), "--push-to-hub", "me/tiny-steer",
                          "--token", "hf_wrong", env={"HF_ENDPOINT": hub.url})
        reader = invoke_cli("export", str(trained_run), "-o", str(tmp_path / "out"), "--push-to-hub", "me/tiny-steer",
                            env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_reader"})
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "401" in line and "me/tiny-steer" in line and "--token" in line
    assert "hf_wrong" not in line and "Traceback" not in proc.stderr
    assert reader.returncode == 2 and len(reader.stderr.strip().splitlines()) == 1
    assert "the token from HF_TOKEN is read-only" in reader.stderr and "me/tiny-steer" in reader.stderr
    assert not (tmp_path / "out").exists()  # the hub said no before anything was exported
    assert not hub.repos


def test_a_push_that_fails_after_the_export_says_how_to_push_it_again(trained_run, tmp_path):
    out = tmp_path / "out"
    with FakeHub({"hf_test": "me"}) as hub:
        proc = invoke_cli("export", str(trained_run), "-o", str(out), "--push-to-hub", "someone/else",
                          env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"})
    assert proc.returncode == 2, proc.stderr
    pushing, line = proc.stderr.strip().splitlines()  # the progress line, then the one error line
    assert pushing.startswith("pushing ") and line.startswith("error: the token from HF_TOKEN may not write to "
                                                              "someone/else (403")
    assert f"the export in {out} stands: push it again with steer.train.export.push('{out}', 'someone/else')" in line
    assert (out / "README.md").is_file() and not hub.repos


def test_a_missing_token_fails_before_anything_is_exported(trained_run, tmp_path):
    proc = invoke_cli("export", str(trained_run), "-o", str(tmp_path / "out"), "--push-to-hub", "me/x")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    [line] = proc.stderr.strip().splitlines()
    assert "no Hugging Face token" in line and "HF_TOKEN" in line and "me/x" in line
    lone = invoke_cli("export", str(trained_run), "-o", str(tmp_path / "out"), "--private")
    assert lone.returncode == 2 and "go with --push-to-hub" in lone.stderr and not (tmp_path / "out").exists()


def test_push_failures_are_one_clear_error(exported, monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    from steer.train.export import push, target

    with pytest.raises(UsageError, match="not a hub repo id"):
        target("me/bad//id", "hf_test")
    with pytest.raises(UsageError, match="nothing to push"):
        push(tmp_path, "me/x", token="hf_test")
    with FakeHub({"hf_test": "me"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(UsageError, match=r"the token from HF_TOKEN may not write to someone/else \(403") as err:
            monkeypatch.setenv("HF_TOKEN", "hf_test")
            push(exported, "someone/else")
        assert len(str(err.value).splitlines()) == 1 and "hf_test" not in str(err.value)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the fake hub is gone: nothing listens there now
    with pytest.raises(SteerError, match=r"cannot reach the hub at http://127\.0\.0\.1:\d+ to push me/x") as err:
        push(exported, "me/x", token="hf_test")
    assert not isinstance(err.value, UsageError) and len(str(err.value).splitlines()) == 1
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE"):
        push(exported, "me/x", token="hf_test")


# -- the reviewer's cases: the real repo id, the real visibility, local names, no local paths, no half exports --

def test_a_bare_repo_name_is_pushed_to_the_tokens_namespace_and_the_card_names_that_repo(trained_run, tmp_path):
    out = tmp_path / "tiny"
    with FakeHub({"hf_test": "me", "hf_nameless": ""}) as hub:
        proc = invoke_cli("export", str(trained_run), "-o", str(out), "--push-to-hub", "tiny",
                          env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"pushing {out} to {hub.url}/me/tiny ..."]
        assert f"pushed: {hub.url}/me/tiny  (" in proc.stdout
        assert list(hub.repos) == ["me/tiny"]
        pushed_card = hub.files("me/tiny")["README.md"].decode()
        nameless = invoke_cli("export", str(trained_run), "-o", str(tmp_path / "other"), "--push-to-hub", "tiny",
                              env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_nameless"})
    for text in (pushed_card, (out / "README.md").read_text()):
        assert 'model_id = "me/tiny"' in text and "# me/tiny\n" in text
        assert "hf download me/tiny --local-dir ./tiny" in text and "vllm serve me/tiny --served-model-name tiny" in text
        assert 'model_id = "tiny"' not in text and "vllm serve tiny " not in text
    assert nameless.returncode == 2 and not (tmp_path / "other").exists()  # whose namespace is unknown: no guess
    [line] = nameless.stderr.strip().splitlines()
    assert "did not say whose token this is" in line and "NAMESPACE/NAME" in line


def test_private_onto_an_existing_public_repo_is_refused_before_uploading_and_pushed_says_the_real_visibility(
        trained_run, exported, tmp_path, monkeypatch):
    from steer.train.export import push

    out = tmp_path / "out"
    with FakeHub({"hf_test": "me"}) as hub:
        public = hub.add_repo("me/tiny-steer", private=False)
        proc = invoke_cli("export", str(trained_run), "-o", str(out), "--push-to-hub", "me/tiny-steer", "--private",
                          "--revision", "dev", env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"})
        assert proc.returncode == 2, proc.stderr
        pushing, line = proc.stderr.strip().splitlines()
        assert pushing.startswith("pushing ") and line.startswith("error: me/tiny-steer already exists on ")
        assert "is public: --private does not change an existing repo's visibility" in line
        assert (f"push it again with steer.train.export.push('{out}', 'me/tiny-steer', private=True, "
                f"revision='dev'))") in line
        assert public.private is False and public.branches == {"main": {}} and not public.commits  # nothing sent
        assert not any("/preupload/" in s.path or "/commit/" in s.path or "/branch/" in s.path for s in hub.seen)
        assert (out / "README.md").is_file()  # the export stands

        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.add_repo("me/secret", private=True)
        kept = push(exported, "me/secret", token="hf_test")  # no --private: an existing private repo stays private
        assert kept.private is True and kept.to_json()["private"] is True
        made = push(exported, "me/fresh", token="hf_test", private=True)
        assert made.private is True and hub.repos["me/fresh"].private is True
        plain = push(exported, "me/tiny-steer", token="hf_test")
        assert plain.private is False and hub.files("me/tiny-steer") == _files(exported)


def test_the_retry_hint_carries_private_and_revision(trained_run, tmp_path):
    out = tmp_path / "out"
    with FakeHub({"hf_test": "me"}) as hub:
        proc = invoke_cli("export", str(trained_run), "-o", str(out), "--push-to-hub", "someone/else", "--private",
                          "--revision", "v1", "--commit-message", "first try",
                          env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert (f"steer.train.export.push('{out}', 'someone/else', private=True, revision='v1', "
            "commit_message='first try'))") in line


def test_relative_local_names_resolve_against_the_run_and_never_become_hub_ids(tmp_path, monkeypatch):
    from steer.train.card import base_model, card, hub_id

    project = tmp_path / "project"
    pulled = project / "models" / "stories260k"
    pulled.mkdir(parents=True)
    (pulled / "steer-model.json").write_text(json.dumps({"alias": "stories260k", "license": "MIT"}))
    (project / "data" / "synth").mkdir(parents=True)
    for name, kind, recipe in (
            ("sft", "sft", {"model": {"name_or_path": "models/stories260k"}, "train": {"output_dir": "runs/sft"}}),
            ("dpo", "dpo", {"model": {"name_or_path": "runs/sft"}, "train": {"output_dir": "runs/dpo"},
                            "data": {"sources": [{"path": "data/synth"}, {"path": "data/extra.jsonl"},
                                                 {"path": "nvidia/HelpSteer2"}]}})):
        run = project / "runs" / name
        run.mkdir(parents=True)
        (run / "steer.json").write_text(json.dumps({"kind": kind, "method": "full", "base_model": None}))
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    elsewhere = tmp_path / "elsewhere"  # the export runs from another folder: no runs/ or data/ here
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    out.mkdir()
    info = {"kind": "dpo", "method": "full", "base_model": None, "template": {"kind": "steerlm", "schema": None}}
    text = card(out, project / "runs" / "dpo", info)
    meta = _front_matter(text)
    assert "base_model" not in meta and meta["datasets"] == ["nvidia/HelpSteer2"]
    assert meta["license"] == "mit"  # found the pulled base at the end of the chain, from the run's origin
    assert "`stories260k`, through a steer sft run (`sft`)" in text
    assert "`synth`; `extra.jsonl`; `nvidia/HelpSteer2`" in text and "data/synth" not in text
    recipe = yaml.safe_load((project / "runs" / "dpo" / "recipe.yaml").read_text())
    assert base_model(info, recipe, project / "runs" / "dpo") == (str(project / "models" / "stories260k"),
                                                                    ["a steer sft run (`sft`)"])
    (project / "runs" / "dpo" / "recipe.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": "runs/sft"}}))
    assert base_model(info, {"model": {"name_or_path": "runs/sft"}}, project / "runs" / "dpo")[1] == \
        ["a steer sft run (`sft`)"]  # no output_dir recorded: found above the run folder
    for local in ("runs/sft", "runs/gone", "./model", "../model", "/abs/model", "~/model", "me/data.jsonl",
                  "me/data.parquet", "me/rows.csv", "me/meta.json", "a/b/c", ".", ".."):
        assert hub_id(local) is None, local
    assert hub_id("data/synth", [project]) is None and hub_id("models/stories260k", [project]) is None
    assert hub_id("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B" and hub_id("nvidia/HelpSteer2") == "nvidia/HelpSteer2"


def test_the_exported_steer_json_names_the_run_folder_not_a_local_path(exported, trained_run):
    info = json.loads((exported / "steer.json").read_text())
    assert info["exported_from"] == trained_run.name
    assert str(trained_run.parent) not in (exported / "steer.json").read_text()


def test_a_card_that_cannot_be_written_leaves_no_half_written_export_and_a_rerun_works(tmp_path, shared_assets,
                                                                                      monkeypatch):
    import steer.train.export as export_module

    run = _hand_run(tmp_path / "run", shared_assets, "sft")
    good = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text("model: {name_or_path: [unclosed\n")  # a hand edit gone wrong
    out = tmp_path / "out"
    proc = invoke_cli("export", str(run), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "recipe.yaml: not valid YAML" in line and "Traceback" not in proc.stderr
    (run / "recipe.yaml").write_text("model: a string\n")  # valid YAML, not a recipe a card reads
    proc = invoke_cli("export", str(run), "-o", str(out))
    assert proc.returncode == 2 and "`model` is not a mapping" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    (run / "recipe.yaml").write_text(good)
    real = export_module.write_card

    def failing(*args, **kwargs):
        raise UsageError("the card failed")

    monkeypatch.setattr(export_module, "write_card", failing)  # fails after the weights are written
    with pytest.raises(UsageError, match="the card failed"):
        export_module.export(run, out)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial folder left
    monkeypatch.setattr(export_module, "write_card", real)
    out.mkdir()  # an empty OUT is fine
    proc = invoke_cli("export", str(run), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {"README.md", "steer.json", "recipe.yaml", "model.safetensors"} <= set(_files(out))
    assert "# out\n" in (out / "README.md").read_text() and "vllm serve ./out " in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]
