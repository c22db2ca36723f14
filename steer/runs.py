"""The run directory, and loading models: the only place that reads ``steer.json``, resolves a model
argument to its weights, adapter and tokenizer, and loads trained models and tokenizers.

A model argument is a steer run directory (or one of its ``checkpoint-N`` folders), an exported
model, a bare PEFT adapter folder, any Hugging Face model folder, or a hub id. A run directory holds
``steer.json`` (what the run is, its base model, how to steer it), the weights (a PEFT adapter over
the base model, or full weights) and the tokenizer whose chat template is the steering template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.attributes import Schema, get_schema
from steer.errors import TemplateError, UsageError
from steer.models import local_path, stamp
from steer.outputs import write_text_atomic
from steer.templates import SteerTemplate, for_tokenizer

RUN_FILE = "steer.json"
RECIPE_FILE = "recipe.yaml"  # the resolved recipe a run was trained with
TEMPLATE_FILE = "chat_template.jinja"  # the tokenizer's chat template: the steering template
ADAPTER = "adapter_config.json"
TOKENIZER = "tokenizer_config.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not valid JSON ({getattr(err, 'msg', err)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def find_run_file(folder: Path) -> dict | None:
    """``steer.json`` of a run directory or of the run a checkpoint folder belongs to (None: not a run)."""
    path = run_path(folder, RUN_FILE)
    return _read_json(path) if path is not None else None


def run_path(folder: Path, name: str) -> Path | None:
    """A file of the run ``folder`` is (or belongs to, for a checkpoint): in it, else in its parent."""
    for candidate in (folder, folder.parent):
        if (candidate / name).is_file():
            return candidate / name
    return None


def run_info(path: str | Path) -> tuple[Path, dict]:
    """``(weights folder, steer.json)`` of a run directory or one of its checkpoints."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"not a directory: {folder}")
    info = find_run_file(folder)
    if info is None:
        raise UsageError(f"{folder} is not a steer run directory (no {RUN_FILE} here or in its parent)")
    return folder, info


METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step (the training loop writes it)


def read_metrics(path: str | Path) -> list[dict]:
    """The logged steps of a run directory (or of the run a checkpoint belongs to; a run still training
    too), in order; a line that is not a JSON object is an error naming the line."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"not a directory: {folder}")
    found = run_path(folder, METRICS_FILE)
    if found is None:
        raise UsageError(f"{folder}: no {METRICS_FILE} (not a steer run, or one that has logged nothing yet)")
    rows = []
    with open(found, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{found}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{found}:{n}: expected a JSON object")
            rows.append(row)
    return rows


def read_recipe(path: str | Path) -> dict | None:
    """The resolved recipe (``recipe.yaml``) of a run directory or of the run a checkpoint belongs to, as
    the mapping it holds (not re-validated: a card or a report reads what was trained); None without one."""
    import yaml

    found = run_path(Path(path), RECIPE_FILE)
    if found is None:
        return None
    try:
        data = yaml.safe_load(found.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"{found}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{found}: expected a mapping of recipe sections")
    return data


def write_run_file(run_dir: Path, info: dict) -> Path:
    """Write ``steer.json`` atomically (a reader never sees half a file)."""
    return write_text_atomic(run_dir / RUN_FILE, json.dumps(info, indent=2))


@dataclass(frozen=True)
class ModelRef:
    """Where a model's pieces are: ``weights`` (full weights, or the base model under ``adapter``: a
    folder or hub id), the LoRA ``adapter`` folder, the ``tokenizer`` and the run's ``steer.json``."""

    name: str
    weights: str
    adapter: str | None
    tokenizer: str
    spec: dict | None


def missing_folder(name: str | Path) -> bool:
    """Whether ``name`` is meant as a local folder (not a hub id) and there is none: an absolute or
    ``./``/``~`` path, a file, or more than one ``/``."""
    text, path = str(name), Path(name).expanduser()
    if path.is_dir():
        return False
    return path.is_absolute() or text.startswith((".", "~")) or path.exists() or text.count("/") > 1


def model_id(model: str | Path) -> str:
    """What a job records as the model it used (and a resume compares): a local folder's absolute
    path, so ``./run`` and ``run`` agree, or a hub id as given. A pulled model (by alias or folder) adds
    its dtype and pull time, so a re-pull is another model."""
    folder = Path(local_path(str(model))).expanduser()
    if not folder.is_dir():
        return str(model)
    pull = stamp(folder)
    return f"{folder.resolve()} ({pull})" if pull else str(folder.resolve())


def resolve(model: str | Path) -> ModelRef:
    """Where the weights, adapter and tokenizer of a model argument are (nothing is loaded); a known
    alias (``steer models list``) is the folder it was pulled to."""
    model = local_path(str(model))
    folder = Path(model)
    if not folder.is_dir():
        if missing_folder(model):
            raise UsageError(f"model not found: {model}")
        return ModelRef(str(model), str(model), None, str(model), None)  # a hub id
    spec = find_run_file(folder)
    own_tokenizer = (folder / TOKENIZER).is_file()
    # a checkpoint folder without its own tokenizer uses its run's
    run_tokenizer = str(folder.parent) if spec is not None and (folder.parent / TOKENIZER).is_file() else None
    if (folder / ADAPTER).is_file():
        base = (spec or {}).get("base_model") or _read_json(folder / ADAPTER).get("base_model_name_or_path")
        if not base:
            raise UsageError(f"{folder / ADAPTER} names no base model (base_model_name_or_path)")
        tokenizer = str(folder) if own_tokenizer else run_tokenizer or str(base)
        return ModelRef(str(model), str(base), str(folder), tokenizer, spec)
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder} is not a model: it holds no config.json (weights) and no adapter_config.json "
                         "(a LoRA adapter)")
    return ModelRef(str(model), str(folder), None, str(folder) if own_tokenizer else run_tokenizer or str(folder), spec)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_tokenizer(source: str | ModelRef) -> Any:
    """The tokenizer of a model reference, folder or hub id, with one clear error when it cannot be read."""
    from transformers import AutoTokenizer

    path = source.tokenizer if isinstance(source, ModelRef) else local_path(str(source))
    if missing_folder(path):
        raise UsageError(f"tokenizer not found: {path} (no such folder)")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load the tokenizer {path!r}: {_first_line(err)}") from None


def torch_dtype(name: str) -> Any:
    """The torch dtype for ``auto`` (bf16 on a GPU that has it, else fp32), ``float32``, ``bfloat16`` or ``float16``."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if name not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"dtype {name!r}: use float32, bfloat16, float16 or auto", field="dtype")
    return getattr(torch, name)


HEADS = {"lm": "AutoModelForCausalLM", "none": "AutoModel", "score": "AutoModelForSequenceClassification"}


def load_model(ref: ModelRef, *, dtype: Any = None, merge: bool = False, head: str = "lm") -> Any:
    """The model of ``ref``: its weights, or its base with the LoRA adapter on top (merged into the
    base weights when ``merge``). ``head``: ``lm`` (a causal LM), ``none`` (the transformer alone,
    what an attribute prediction model's head reads) or ``score`` (sequence classification: a reward model)."""
    import transformers

    from steer.vision import folder_is_vlm

    name = "AutoModelForImageTextToText" if head == "lm" and folder_is_vlm(ref.weights) else HEADS[head]  # a hub id too
    auto = getattr(transformers, name)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if ref.adapter and (Path(ref.weights) / ADAPTER).is_file():
        # an adapter trained on top of another LoRA run (SFT, then DPO): that run merged is its base
        model = load_model(resolve(ref.weights), dtype=dtype, merge=True, head=head)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.adapter)
        return model.merge_and_unload() if merge else model
    try:
        model = auto.from_pretrained(ref.weights, **kwargs)
    except (OSError, ValueError) as err:
        what = f"the base model {ref.weights!r} of {ref.name}" if ref.adapter else f"model {ref.name!r}"
        raise UsageError(f"cannot load {what}: {_first_line(err)}") from None
    if ref.adapter is None:
        return model
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, ref.adapter)
    return model.merge_and_unload() if merge else model


def ensure_padding(tokenizer: Any) -> Any:
    """Give a tokenizer without a pad token its end-of-sequence (or unknown) token as one."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def model_template(tokenizer: Any, spec: dict | None, *, kind: str | None = None, schema: str | None = None) -> SteerTemplate:
    """The steering template of a model: the one it was trained with (its tokenizer's chat template and
    ``steer.json``), or ``kind`` built over its own chat template (``--template`` overrides both). A
    model steer did not train gets ``janus`` (value statements as the system message) over its own
    chat template, or ``steerlm`` when it has none."""
    if spec is not None and kind is None:
        t = spec["template"]
        built = get_schema(schema) if schema is not None else Schema.from_dict(t["schema"]) if t.get("schema") else None
        tokens = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
        return SteerTemplate(t["kind"], tokenizer.chat_template, built, tuple(t.get("stop", ())),
                             bool(t.get("merge_system")), tokens, image_token=t.get("image_token"))
    # a model steer did not train knows no attribute line: its own template, steered by system messages
    chosen = kind or ("janus" if getattr(tokenizer, "chat_template", None) else "steerlm")
    built = get_schema(schema or "helpsteer") if chosen != "janus" or schema else None
    try:
        return for_tokenizer(chosen, built, tokenizer)
    except (TemplateError, UsageError) as err:  # an unknown kind, a steer-wrapped template asked to wrap again,
        raise UsageError(f"--template {chosen}: {err}", field="template") from None  # or no chat template
