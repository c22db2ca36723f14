"""Jobs that never reuse stale results or write where they should not, and messages that point the
right way: batch and label resume, training preflight, the model argument, recipe hints."""

from __future__ import annotations

import json

import pytest

from steer.config import validate_recipe
from steer.errors import UsageError
from tests import fixtures
from tests.conftest import invoke_cli


def _model(shared_assets) -> str:
    return str(shared_assets / "models/stories260k")


class EchoEngine:
    """An engine that answers every prompt with the same words (no model needed)."""

    def __init__(self):
        from steer.attributes import get_schema
        from steer.templates import build_template

        self.template = build_template("steerlm", schema=get_schema("helpsteer"))
        self.calls = 0

    def generate(self, prompts, sampling, slots=None):
        from steer.engines.base import Response

        self.calls += 1
        return [Response("words", [1], "stop", 3, 1, 0.1) for _ in prompts]


def test_batch_refuses_to_resume_with_other_settings_and_never_writes_onto_its_input(tmp_path):
    from steer.engines.base import Sampling
    from steer.generate import batch

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "prompt": f"Story {i}"}) + "\n" for i in range(3)))
    out, engine, greedy = tmp_path / "out.jsonl", EchoEngine(), Sampling(temperature=0, max_new_tokens=4)
    assert batch.run(engine, src, out, greedy, model="m").written == 3
    row = json.loads(out.read_text().splitlines()[0])
    assert row["settings"]["sampling"]["temperature"] == 0 and row["settings"]["model"] == "m"
    assert batch.run(engine, src, out, greedy, model="m").skipped == 3  # the same run again: all done
    before = out.read_bytes()
    for change, needle in (({"sampling": Sampling(temperature=0.5, max_new_tokens=4)}, "other sampling.temperature"),
                           ({"steering": {"attributes": "complexity=4"}}, "other steering.attributes.complexity"),
                           ({"model": "other"}, "other model")):
        args = {"sampling": greedy, "model": "m", **change}
        with pytest.raises(UsageError, match=needle + ".*another --output"):
            batch.run(engine, src, out, args.pop("sampling"), **args)
    src.write_text(src.read_text().replace("Story 1", "Story one"))
    with pytest.raises(UsageError, match="other prompt"):
        batch.run(engine, src, out, greedy, model="m")
    assert out.read_bytes() == before  # nothing written by the refused runs
    with pytest.raises(UsageError, match="never writes onto its input"):
        batch.run(engine, src, src, greedy)
    unrelated = tmp_path / "notes.jsonl"
    unrelated.write_text('{"note": "mine"}\n{"note": "no newline"}')
    kept = unrelated.read_bytes()
    with pytest.raises(UsageError, match="not a row this command wrote"):
        batch.run(engine, src, unrelated, greedy)
    assert unrelated.read_bytes() == kept  # not even its unfinished last line was cut


def test_batch_rows_that_are_not_text_are_bad_rows_and_a_folder_is_the_same_model_however_named(tmp_path, monkeypatch):
    from steer.engines.base import Sampling
    from steer.generate import batch

    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": 1, "prompt": "fine"}\n{"id": 2, "prompt": "caf\xe9"}\n{"id": 3, "prompt": "a \\ud800 b"}\n')
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path)
    out, engine, greedy = tmp_path / "out.jsonl", EchoEngine(), Sampling(temperature=0, max_new_tokens=4)
    report = batch.run(engine, src, out, greedy, model="run")
    assert (report.written, report.errors) == (1, 2)
    errors = [json.loads(line) for line in batch.errors_path(out).read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 3] and "not UTF-8" in errors[0]["reason"]
    assert "lone surrogate" in errors[1]["reason"]
    assert json.loads(out.read_text())["settings"]["model"] == str(tmp_path / "run")
    assert batch.run(engine, src, out, greedy, model="./run").skipped == 1  # not refused as another model


def test_cli_batch_refusal_is_one_line_before_any_progress(tmp_path, shared_assets):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "prompt": "Story"}) + "\n")
    out = tmp_path / "out.jsonl"
    base = ["batch", _model(shared_assets), "--template", "steerlm", "--input", str(src), "--output", str(out),
            "--max-new-tokens", "4"]
    assert invoke_cli(*base, "--temperature", "0").returncode == 0
    changed = invoke_cli(*base, "--temperature", "0.5")
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1 and "other sampling.temperature" in changed.stderr


def test_label_refuses_another_apms_output_and_marks_what_it_wrote(tmp_path):
    """A labelled file says which APM labelled it; resuming it with another is refused, unit-level with a
    stand-in APM (the real one is exercised end to end in test_apm.py)."""
    from steer.attributes import get_schema
    from steer.data.records import Conversation, Message
    from steer.label import label_records

    class Stand:
        schema = get_schema("helpsteer")
        names = schema.names

        def predict(self, conversations, batch_size):
            return [[1.2, 3.7, 4.0, 0.4, 2.5] for _ in conversations]

        def values(self, prediction, raw=False):
            from steer.apm import APM

            return APM.values(self, prediction, raw=raw)

    records = [Conversation(f"c{i}", [Message("user", "Hi"), Message("assistant", "Hello.")]) for i in range(3)]
    out = tmp_path / "labelled.jsonl"
    report = label_records(Stand(), records, out, raw=True, labelled_by="/apms/one")
    assert report.written == 3
    row = json.loads(out.read_text().splitlines()[0])
    assert row["meta"]["steer_label"] == {"apm": "/apms/one", "raw": True}
    assert row["messages"][1]["attributes"] == {"helpfulness": 1, "correctness": 4, "coherence": 4, "complexity": 0,
                                                "verbosity": 2}
    assert row["messages"][1]["scores"]["correctness"] == pytest.approx(3.7)
    assert label_records(Stand(), records, out, raw=True, labelled_by="/apms/one").skipped == 3
    with pytest.raises(UsageError, match=r"record c0 was made with other steer_label.apm"):
        label_records(Stand(), records, out, raw=True, labelled_by="/apms/two")
    with pytest.raises(UsageError, match="steer_label.raw"):
        label_records(Stand(), records, out, raw=False, labelled_by="/apms/one")


def _recipe(tmp_path, shared_assets, **model) -> dict:
    data = fixtures.write(fixtures.helpsteer_rows() * 4, tmp_path / "hs.jsonl")
    return {"model": model or {"name_or_path": _model(shared_assets)},
            "data": {"sources": [{"path": str(data)}], "max_length": 512, "cache_dir": str(tmp_path / "cache")},
            "train": {"method": "full", "max_steps": 1, "output_dir": str(tmp_path / "run")}}


def test_training_checks_the_model_and_tokenizer_before_anything_is_prepared_or_written(tmp_path, shared_assets):
    from steer.train import train

    missing = validate_recipe(_recipe(tmp_path, shared_assets, name_or_path=str(tmp_path / "no" / "model")))
    with pytest.raises(UsageError, match="is not a model folder"):
        train(missing)
    small = validate_recipe(_recipe(tmp_path, shared_assets, tokenizer=str(shared_assets / "tokenizers/gpt2"),
                                    from_scratch={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                                  "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 512}))
    with pytest.raises(UsageError, match=r"the tokenizer has 50,257 tokens but model.from_scratch.vocab_size has 512"):
        train(small)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("schema, template, suggestion", [
    ("safety", "steerlm", "--attr harmlessness=1"), (None, "janus", '--value "I am a busy expert; be terse."'),
    ("helpsteer", "steerlm", "--attr verbosity=1")])
def test_the_next_line_after_training_steers_the_way_the_model_learnt(tmp_path, schema, template, suggestion):
    from steer.train.tasks.sft import TASK

    recipe = validate_recipe({"model": {"name_or_path": "m"}, "template": {"kind": template, "schema": schema},
                              "data": {"sources": [{"path": "d.jsonl"}]}})
    first = TASK.next_steps(recipe, tmp_path / "run")[0]
    assert first.endswith(suggestion)


def test_model_and_template_mistakes_say_what_is_wrong(tmp_path, shared_assets):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    notes = invoke_cli("generate", str(folder), "hi")
    assert notes.returncode == 2 and "is not a model: it holds no config.json" in notes.stderr
    nope = invoke_cli("generate", _model(shared_assets), "hi", "--template", "nope")
    assert nope.returncode == 2 and "unknown template" in nope.stderr and "already carries" not in nope.stderr
    chat = invoke_cli("generate", _model(shared_assets), "hi", "--template", "chat")
    assert chat.returncode == 2 and "template.kind: steerlm" in chat.stderr
    hint = invoke_cli("recipe", "check", str(tmp_path / "r.yaml"))
    assert hint.returncode == 2
    (tmp_path / "r.yaml").write_text("model: {name_or_path: m}\ndata: {sources: [{path: d.jsonl}]}\ntrain: {lr: 1}\n")
    lr = invoke_cli("recipe", "check", str(tmp_path / "r.yaml"))
    assert lr.returncode == 2 and "did you mean 'learning_rate'?" in lr.stderr


def test_serve_hands_over_to_vllm_only_when_it_is_installed(tmp_path, shared_assets):
    import shutil

    if shutil.which("vllm"):
        pytest.skip("vllm is installed here")
    out = invoke_cli("serve", _model(shared_assets), "--template", "steerlm", "--engine", "vllm")
    assert out.returncode == 2 and "vLLM is not installed" in out.stderr and "Traceback" not in out.stderr


def test_chat_can_retry_an_answer_that_ctrl_c_stopped(tmp_path):
    from steer.attributes import get_schema
    from steer.data.loader import load
    from steer.engines.base import Response, Sampling
    from steer.generate.chat import ChatSession
    from steer.steering import Steering
    from steer.templates import build_template

    class Engine:
        template = build_template("steerlm", schema=get_schema("helpsteer"))
        stop_after = None

        def stream(self, prompt, sampling, cancel=None):
            for k, word in enumerate(["An", " answer."]):
                if self.stop_after == k:
                    raise KeyboardInterrupt
                yield word
            yield Response("An answer.", [1, 2], "stop", 3, 2, 0.1)

    engine = Engine()
    chat = ChatSession(engine, Steering(), Sampling())
    chat.handle("First question?")
    engine.stop_after = 1
    with pytest.raises(KeyboardInterrupt):
        list(chat.answer())
    assert chat.messages == [{"role": "user", "content": "First question?"}]  # still pending
    engine.stop_after = None
    assert chat.handle("/retry").generate
    assert list(chat.answer())[-1].text == "An answer." and chat.messages[-1]["role"] == "assistant"
    chat.handle("Second?")
    engine.stop_after = 0
    with pytest.raises(KeyboardInterrupt):
        list(chat.answer())
    chat.handle("Second, asked again?")  # a new question replaces the stopped one
    assert [m["content"] for m in chat.messages if m["role"] == "user"] == ["First question?", "Second, asked again?"]
    chat.handle(f"/save {tmp_path / 'chat.jsonl'}")
    (record,), _ = load(tmp_path / "chat.jsonl")  # the unanswered question is not saved
    assert [m.role for m in record.messages] == ["user", "assistant"]


def test_help_shows_plain_metavars_and_long_jobs_print_lines_without_a_terminal(tmp_path, shared_assets):
    helped = invoke_cli("generate", "--help")
    assert helped.returncode == 0 and "MODEL [PROMPT]" in helped.stdout and "--temperature" in helped.stdout
    for raw in ("<list[str]>", "<bool>", "{model}", "<str>", "<int>"):
        assert raw not in helped.stdout, raw
    import yaml

    recipe = _recipe(tmp_path, shared_assets)
    recipe["train"].update(max_steps=4, logging_steps=1)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    trained = invoke_cli("train", "sft", str(tmp_path / "r.yaml"))  # stderr is captured here, not a terminal
    assert trained.returncode == 0, trained.stderr
    lines = trained.stderr.splitlines()
    assert any(line.startswith("tokenize ") for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("train ")][-1] == "4/4"
    assert not any("\x1b[" in line for line in lines)  # no terminal control codes in a log


def test_resuming_drops_the_metrics_logged_after_the_checkpoint_and_any_row_it_cannot_place(tmp_path):
    from steer.train.loop import METRICS_FILE, trim_metrics

    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 5, "loss": 1.0}\n{"step": null}\n{"step": 12, "loss": 0.5}\n{"step": 1')
    trim_metrics(tmp_path, 10)
    assert path.read_text() == '{"step": 5, "loss": 1.0}\n'


def test_atomic_outputs_get_the_mode_a_plain_write_would(tmp_path):
    import os
    import stat

    from steer.outputs import write_text_atomic

    old = os.umask(0o022)
    try:
        fresh = write_text_atomic(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's 0600
        private = tmp_path / "private.json"
        private.write_text("{}")
        private.chmod(0o600)
        write_text_atomic(private, "[]")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "[]"
    finally:
        os.umask(old)
