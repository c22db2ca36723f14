"""The model card of an exported model: ``README.md`` with the hub's YAML front matter, what was trained
(from the run's ``steer.json``, ``recipe.yaml`` and ``metrics.jsonl``), the steering format (template,
attribute schema, presets, value statements) and how to use the model with steer, plain transformers
and vLLM; a scalar-head model's card says how to score with it instead.

Every code block in a card is meant to run as it stands (the tests run the transformers ones against an
exported tiny model); ``model_id`` is the hub repo when one is known, else the exported folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from steer.attributes import Schema, presets_for
from steer.errors import UsageError
from steer.models import license_of
from steer.outputs import write_text_atomic
from steer.runs import RECIPE_FILE, find_run_file, read_metrics, read_recipe, run_path
from steer.templates import ATTRIBUTE_LINE, STEERLM_STOP

CARD_FILE = "README.md"
SCALAR_KINDS = ("apm", "rm", "cost")  # a head over AutoModel: it scores, it does not generate
EXAMPLE_PROMPT = "Explain why the sky is blue."
WHAT = {
    "sft": "a steerable generator, fine-tuned with steering in the prompt",
    "dpo": "a steerable generator, preference-optimised on chosen/rejected pairs",
    "rl": "a steerable generator, trained by online reinforcement learning against judges",
    "apm": "an attribute prediction model: a regression head with one output per attribute",
    "rm": "a Bradley-Terry reward model: one scalar, higher for the better answer",
    "cost": "a Safe RLHF cost model: a scalar above 0 for an unsafe answer, below 0 for a safe one",
}
KIND_TAGS = {"sft": ["sft"], "dpo": ["dpo"], "rl": ["rl"], "apm": ["attribute-prediction-model"],
             "rm": ["reward-model"], "cost": ["cost-model", "safe-rlhf"]}
FORMAT_TAGS = {"steerlm": ["steerlm"], "chat": ["steerlm", "attribute-conditioning"],
               "janus": ["janus", "value-statements"]}
HUB_LICENSES = ("apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
                "openrail", "gpl-3.0", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "gemma", "cc0-1.0")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz", ".bz2", ".xz", ".zst", ".txt", ".arrow")
LOCAL_SUFFIXES = (*DATA_SUFFIXES, ".yaml", ".yml", ".safetensors", ".bin", ".pt", ".gguf", ".tar", ".zip")
RECIPE_KINDS = ("dpo", "rl", "rm", "cost", "apm")  # a kind's own recipe section


def write_card(out: Path, source: Path, info: Mapping, *, repo_id: str | None = None, name: str | None = None) -> Path:
    """Write ``out/README.md`` (atomically) for the model exported to ``out`` from the run ``source``
    whose ``steer.json`` is ``info``."""
    return write_text_atomic(out / CARD_FILE, card(out, source, info, repo_id=repo_id, name=name))


def card(out: Path, source: Path, info: Mapping, *, repo_id: str | None = None, name: str | None = None) -> str:
    """The card's text (see :func:`write_card`); ``name``: the exported folder's name when ``out`` is a
    folder it is written in first (default: ``out``'s own)."""
    recipe = card_recipe(source)
    metrics = _metrics(source)
    kind = str(info.get("kind", "sft"))
    schema = _schema(info, kind)
    bases = origins(source, info, recipe)
    base, chain = base_model(info, recipe, source)
    folder_name = name or out.name
    model_id = repo_id or f"./{folder_name}"
    vision = _is_vlm(out)
    what = WHAT.get(kind, kind)
    intro = f"{what[0].upper()}{what[1:]}, trained with steer and exported as a plain Hugging Face model.\n"
    parts = [_front_matter(kind, info, recipe, base, vision, bases), f"# {repo_id or folder_name}\n", intro,
             _trained(kind, info, recipe, metrics, base, chain, bases)]
    if kind in SCALAR_KINDS:
        parts += [_scoring_format(kind, info, schema), _score_usage(kind, info, schema, model_id, vision)]
    else:
        parts += [_steering_format(info, schema), _presets(schema), _generate_usage(info, schema, model_id, vision)]
    parts.append(_files(out))
    return "\n".join(p for p in parts if p)


# -- what the run was ---------------------------------------------------------------------------------

def _metrics(source: Path) -> list[dict]:
    """The run's logged steps; for a checkpoint (``checkpoint-N``) those up to its step."""
    try:
        rows = read_metrics(source)
    except UsageError:  # a run that logged nothing (or a folder steer did not train)
        return []
    checkpoint = re.fullmatch(r"checkpoint-(\d+)", source.name)
    if checkpoint is None:
        return rows
    return [r for r in rows if isinstance(r.get("step"), (int, float)) and r["step"] <= int(checkpoint[1])]


def _schema(info: Mapping, kind: str) -> Schema | None:
    spec = (info.get("apm") or {}).get("schema") if kind == "apm" else (info.get("template") or {}).get("schema")
    return Schema.from_dict(spec) if spec else None


def card_recipe(source: Path) -> dict:
    """The run's ``recipe.yaml`` (``{}`` without one), its sections checked to be what a card reads: a
    hand-edited recipe that is not is one line naming the file, not a traceback."""
    recipe = read_recipe(source) or {}
    for section in ("model", "template", "data", "train", *RECIPE_KINDS):
        if recipe.get(section) is not None and not isinstance(recipe[section], Mapping):
            raise UsageError(f"{run_path(source, RECIPE_FILE)}: `{section}` is not a mapping: cannot write the "
                             "model card")
    sources = (recipe.get("data") or {}).get("sources")
    if sources is not None and not (isinstance(sources, list) and all(isinstance(s, Mapping) for s in sources)):
        raise UsageError(f"{run_path(source, RECIPE_FILE)}: `data.sources` is not a list of mappings: cannot write "
                         "the model card")
    return recipe


def origins(source: Path, info: Mapping, recipe: Mapping) -> list[Path]:
    """The folders a run's relative names (its base model, its data) may be relative to, likeliest first:
    the folder training ran in (the run folder less the recipe's relative ``train.output_dir``), the same
    for a recorded origin (an absolute ``exported_from``, as older exports wrote), the run folder, the
    current folder, and the three folders above the run."""
    run = source.parent if re.fullmatch(r"checkpoint-\d+", source.name) else source
    runs = [run.expanduser().resolve()]
    recorded = Path(str(info.get("exported_from") or "")).expanduser()
    if recorded.is_absolute():
        runs.append(recorded)
    output_dir = str((recipe.get("train") or {}).get("output_dir") or "")
    tail = Path(output_dir).parts if output_dir and not looks_absolute(output_dir) else ()
    found: list[Path] = []
    for folder in runs:
        if tail and ".." not in tail and folder.parts[-len(tail):] == tail and len(folder.parts) > len(tail):
            found.append(Path(*folder.parts[:-len(tail)]))
    found += [*runs, Path.cwd(), *list(runs[0].parents)[:3]]
    return list(dict.fromkeys(found))


def looks_absolute(name: str) -> bool:
    """Whether ``name`` is an absolute path (``/``, ``~``, a Windows drive or share)."""
    text = name.strip()
    return text.startswith(("/", "~", "\\")) or bool(re.match(r"[A-Za-z]:[\\/]", text))


def looks_local(name: str) -> bool:
    """Whether ``name`` is written as a local path, never a hub id: absolute, ``~``, ``./``, ``../`` or
    ``runs/`` in front, a file's extension (``.jsonl``, ``.yaml``), or more than one ``/``."""
    text = name.strip().replace("\\", "/")
    return (looks_absolute(name) or text in (".", "..") or text.startswith(("./", "../", "runs/"))
            or text.lower().endswith(LOCAL_SUFFIXES) or text.count("/") > 1)


def find_local(name: str | None, bases: Sequence[Path] = ()) -> Path | None:
    """The existing file or folder ``name`` names: as it stands when absolute, else under the first of
    ``bases`` (then the current folder) that holds it; None when there is none."""
    if not name or not str(name).strip():
        return None
    path = Path(str(name).strip()).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in (*bases, Path.cwd()):
        if (base / path).exists():
            return base / path
    return None


def base_model(info: Mapping, recipe: Mapping, source: Path | None = None) -> tuple[str | None, list[str]]:
    """The model a run started from (a hub id or a folder, found from the run's origins when it is a
    relative name; None: from scratch) and the steer runs between it and this run (a DPO run over an SFT
    run: that run's kind and folder name), nearest first."""
    name = info.get("base_model") or (recipe.get("model") or {}).get("name_or_path")
    bases = origins(source, info, recipe) if source is not None else []
    chain: list[str] = []
    for _ in range(8):  # runs over runs: a few levels at most
        folder = find_local(str(name), bases) if name else None
        if folder is None or not folder.is_dir():
            break
        name = str(folder)  # a local folder: where it was found (its license is read there)
        spec = find_run_file(folder)
        if spec is None:
            break
        chain.append(f"a steer {spec.get('kind', 'sft')} run (`{folder.resolve().name}`)")
        try:
            recipe = read_recipe(folder) or {}
        except UsageError:  # a run over a run: its recipe only names the next step down
            recipe = {}
        model = recipe.get("model") if isinstance(recipe.get("model"), Mapping) else {}
        name = spec.get("base_model") or model.get("name_or_path")
        bases = origins(folder, spec, recipe)
    return (str(name) if name else None), chain


def hub_id(name: str | None, bases: Sequence[Path] = ()) -> str | None:
    """``name`` as a hub repo id: the repo of a hub cache snapshot folder; else itself when it has a hub
    id's form and neither looks like a local path (:func:`looks_local`) nor names one (under ``bases``,
    the run's origins, or here); else None."""
    if not name:
        return None
    cached = re.search(r"(?:models|datasets)--([^/]+)--([^/]+)/snapshots/", name)
    if cached:
        return f"{cached[1]}/{cached[2]}"
    if looks_local(name) or find_local(name, bases) is not None:
        return None
    return name if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) else None


def _shown(name: str, bases: Sequence[Path] = ()) -> str:
    """A path or id as a card shows it: a hub id as is, a local path by its last part (no local paths)."""
    return hub_id(name, bases) or Path(name).name or name


def _license(base: str | None) -> str | None:
    """The base model's license, where a local folder says it (its README front matter, steer's pull record)."""
    if not base or not Path(base).is_dir():
        return None
    folder = Path(base)
    found = license_of(folder) or _front_matter_of(folder / CARD_FILE).get("license")
    if not found:
        return None
    text = str(found).strip().lower()
    return text if text in HUB_LICENSES or text == "other" else None


def _front_matter_of(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    try:
        data = yaml.safe_load(text[4:text.index("\n---", 4)])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _is_vlm(out: Path) -> bool:
    try:
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" in config


def _front_matter(kind: str, info: Mapping, recipe: Mapping, base: str | None, vision: bool,
                  bases: Sequence[Path] = ()) -> str:
    """The hub's YAML metadata block (``bases``: the run's origins, where its relative names are found)."""
    fmt = str((info.get("template") or {}).get("kind", "steerlm"))
    tags = ["steer", *FORMAT_TAGS.get(fmt, [fmt]), *KIND_TAGS.get(kind, [kind])]
    tags += ["lora"] if info.get("method") in ("lora", "qlora") else []
    tags += ["vision"] if vision else []
    meta: dict = {"library_name": "transformers"}
    if kind not in SCALAR_KINDS:
        meta["pipeline_tag"] = "image-text-to-text" if vision else "text-generation"
    if hub_id(base, bases):
        meta["base_model"] = hub_id(base, bases)
    if _license(base):
        meta["license"] = _license(base)
    datasets = [hub_id(str(s.get("path")), bases) for s in (recipe.get("data") or {}).get("sources") or []]
    if any(datasets):
        meta["datasets"] = sorted({d for d in datasets if d})
    meta["tags"] = list(dict.fromkeys(tags))
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _trained(kind: str, info: Mapping, recipe: Mapping, metrics: list[dict], base: str | None,
             chain: list[str], bases: Sequence[Path] = ()) -> str:
    """The 'Training' section: a table of what the run was, from its files."""
    rows = [("kind", f"`{kind}`: {WHAT.get(kind, kind)}"), ("base model", _base_line(base, chain, recipe)),
            ("method", _method_line(info, recipe)), ("data", _data_line(recipe, bases))]
    rows += _kind_rows(kind, info)
    rows += _metric_rows(metrics, recipe)
    if info.get("steer_version"):
        rows.append(("steer", f"`{info['steer_version']}`"))
    table = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows if v)
    return f"## Training\n\n| | |\n| --- | --- |\n{table}\n"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (a custom schema's description may hold a ``|``)."""
    return " ".join(str(text).replace("|", "\\|").split())


def _base_line(base: str | None, chain: list[str], recipe: Mapping) -> str:
    if base is None:
        arch = ((recipe.get("model") or {}).get("from_scratch") or {}).get("model_type")
        return f"none: trained from scratch{f' (a `{arch}` configuration)' if arch else ''}"
    via = f", through {' over '.join(chain)}" if chain else ""
    return f"`{_shown(base)}`{via}"


def _method_line(info: Mapping, recipe: Mapping) -> str:
    method = str(info.get("method") or (recipe.get("train") or {}).get("method") or "")
    lora = (recipe.get("train") or {}).get("lora") or {}
    if method in ("lora", "qlora"):
        shape = f" (r {lora['r']}, alpha {lora['alpha']})" if "r" in lora and "alpha" in lora else ""
        return f"{'QLoRA' if method == 'qlora' else 'LoRA'}{shape}, merged into the base weights on export"
    return "full fine-tuning" if method == "full" else method


def _data_line(recipe: Mapping, bases: Sequence[Path] = ()) -> str:
    data = recipe.get("data") or {}
    sources = [f"`{_shown(str(s.get('path')), bases)}`" + _source_notes(s) for s in data.get("sources") or []]
    extra = f"; max length {data['max_length']} tokens" if data.get("max_length") else ""
    return "; ".join(sources) + extra if sources else ""


def _source_notes(source: Mapping) -> str:
    """A data source's format, weight and cap, where they are not the defaults."""
    notes = [f"format {source['format']}" if source.get("format", "auto") != "auto" else "",
             f"weight {source['weight']}" if source.get("weight", 1.0) != 1.0 else "",
             f"at most {source['max_examples']} examples" if source.get("max_examples") else ""]
    kept = [n for n in notes if n]
    return f" ({', '.join(kept)})" if kept else ""


def _kind_rows(kind: str, info: Mapping) -> list[tuple[str, str]]:
    """The rows one kind adds: DPO's loss, RL's judges, a scalar head's outputs."""
    part = info.get(kind) or {}
    if kind == "dpo":
        loss = f"`{part.get('loss')}`, beta {part.get('beta')}, reference: {part.get('reference')}"
        return [("preference loss", loss)]
    if kind == "rl":
        judges = f"reward `{_judge(part.get('reward'))}`" + (f", cost `{_judge(part.get('cost'))}` under threshold "
                                                             f"{part.get('threshold')}" if part.get("cost") else "")
        return [("algorithm", f"`{part.get('algorithm')}`"), ("judges", judges)]
    if kind in ("rm", "cost"):
        axes = ", ".join(part.get("axes") or []) or "every pair"
        return [("outputs", ", ".join(f"`{n}`" for n in part.get("outputs") or [kind])), ("trained on", axes)]
    return []


def _judge(spec: object) -> str:
    """A judge spec (``rm:/path/to/run``) with a local path shown by its last part."""
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    return f"{prefix}:{_shown(rest)}" if sep and rest else text


def _metric_rows(metrics: list[dict], recipe: Mapping) -> list[tuple[str, str]]:
    train = recipe.get("train") or {}
    steps = max((int(r["step"]) for r in metrics if isinstance(r.get("step"), (int, float))), default=None)
    rows = []
    if steps is not None:
        epoch = max((float(r["epoch"]) for r in metrics if isinstance(r.get("epoch"), (int, float))), default=None)
        tokens = max((int(r["num_input_tokens_seen"]) for r in metrics
                      if isinstance(r.get("num_input_tokens_seen"), (int, float))), default=0)
        said = [f"{epoch:.3g} epoch{'' if epoch == 1 else 's'}" if epoch else "",
                f"{tokens:,} tokens" if tokens else ""]
        rows.append(("steps", f"{steps}" + (f" ({', '.join(w for w in said if w)})" if any(said) else "")))
    if train:
        batch = f"{train.get('batch_size')} x {train.get('grad_accum', 1)} accumulation"
        rows.append(("optimisation", f"learning rate {train.get('learning_rate')}, batch {batch}, "
                                     f"seed {train.get('seed')}"))
    final = next((r for r in reversed(metrics) if "train_loss" in r), None)
    if final is not None:
        rows.append(("training loss", f"{final['train_loss']:.4g} (mean over the run)"))
    evals = next((r for r in reversed(metrics) if any(k.startswith("eval_") for k in r)), None)
    if evals is not None:
        shown = {k: v for k, v in evals.items() if k.startswith("eval_") and isinstance(v, (int, float))
                 and not k.endswith(("runtime", "per_second"))}
        said = ", ".join(f"{k.removeprefix('eval_')} {v:.4g}" for k, v in list(shown.items())[:8])
        rows.append(("last evaluation", said))
    return rows


# -- a generator: its steering format and how to steer it ----------------------------------------------

def _steering_format(info: Mapping, schema: Schema | None) -> str:
    """How this model is steered: the template kind, the attribute schema, value statements."""
    template = info.get("template") or {}
    fmt = str(template.get("kind", "steerlm"))
    if fmt == "steerlm":
        open_, close = ATTRIBUTE_LINE["steerlm"]
        how = ("NeMo SteerLM's conversation format (`<extra_id_0>System`, `<extra_id_1>User`, "
               "`<extra_id_1>Assistant`); "
               f"each assistant turn opens with the attribute string `{open_}name:value,...` and a newline, and ends "
               f"at `{STEERLM_STOP}` (in `generation_config.stop_strings`).")
    elif fmt == "chat":
        open_, close = ATTRIBUTE_LINE["chat"]
        how = ("the base model's own chat template; each assistant turn opens with "
               f"`{open_}name:value,...{close.strip()}` and a newline.")
    else:
        how = ("value statements (Janus): what the user wants, as sentences in the system message, over the base "
               "model's own chat template (Mistral's `[INST] ... [/INST]` when it has none).")
    attributes = "" if schema is None else "`steer_attributes` (a mapping, or a `name:value,...` string) and "
    text = (f"## Steering\n\nFormat: `{fmt}`, {how} The tokenizer's chat template renders all of it: pass the steering "
            f"as the template variable{'s' if attributes else ''} {attributes}`steer_values` (a string or a list of "
            "strings, added to the system "
            "message).\n")
    if template.get("merge_system"):
        text += "\nThis template has no system role: the system text goes in front of the first user turn.\n"
    if schema is None:
        return text + ("\nThis model has no attribute schema: steer it with `steer_values` (value statements) or a "
                       "system message; `steer_attributes` is refused.\n")
    rows = "\n".join(f"| `{a.name}` | {a.min}-{a.max} | {a.default} | {_cell(a.description)} |"
                     for a in schema.attributes)
    return text + (f"\nAttributes (schema `{schema.name}`, in the order of the attribute string; an attribute not "
                   "given takes its default, a value outside its range is refused):\n\n"
                   f"| attribute | range | default | meaning |\n"
                   f"| --- | --- | --- | --- |\n{rows}\n\nWith no steering at all the defaults apply: "
                   f"`{schema.render({})}`.\n")


def _presets(schema: Schema | None) -> str:
    found = presets_for(schema) if schema is not None else {}
    if not found:
        return ""
    rows = "\n".join(f"| `{name}` | {', '.join(f'{k}={v}' for k, v in values.items()) or '(the defaults)'} | {desc} |"
                     for name, (desc, values) in found.items())
    return ("## Presets\n\nNamed sets of attribute values steer knows (`--preset NAME`); with transformers or vLLM "
            f"pass the values they set.\n\n| preset | sets | for |\n| --- | --- | --- |\n{rows}\n")


def example_attributes(schema: Schema) -> dict[str, int]:
    """The attributes a card's examples steer with: short and expert where the schema has those."""
    chosen = {a.name: (a.min if a.name == "verbosity" else a.max) for a in schema.attributes
              if a.name in ("verbosity", "complexity")}
    return chosen or {schema.attributes[0].name: schema.attributes[0].max}


def _steer_kwargs(schema: Schema | None) -> tuple[str, str]:
    """The example's template variable and its Python value."""
    if schema is None:
        return "steer_values", json.dumps(["I am a busy expert: be brief and precise."])
    return "steer_attributes", json.dumps(example_attributes(schema))


def _generate_usage(info: Mapping, schema: Schema | None, model_id: str, vision: bool) -> str:
    stop = list((info.get("template") or {}).get("stop") or [])
    name, value = _steer_kwargs(schema)
    flag = (" ".join(f"--attr {k}={v}" for k, v in example_attributes(schema).items()) if schema is not None
            else '--value "I am a busy expert: be brief and precise."')
    fetch, folder = _local(model_id)
    steer = (f"## Use with steer\n\nsteer reads the folder (its `steer.json`).\n\n```bash\n{fetch}"
             f"steer generate {folder} \"{EXAMPLE_PROMPT}\" {flag}\nsteer chat {folder}\n"
             f"steer serve {folder}   # an OpenAI server with steering fields\n```\n")
    plain = _vision_snippet(model_id, name, value, stop) if vision else _text_snippet(model_id, name, value, stop)
    return "\n".join([steer, plain, _vllm(model_id, name, value, stop, vision)])


def _local(model_id: str) -> tuple[str, str]:
    """The command that fetches a hub repo into a folder (none for a folder) and that folder, for steer."""
    if model_id.startswith("./"):
        return "", model_id
    folder = f"./{model_id.rstrip('/').split('/')[-1]}"
    return f"hf download {model_id} --local-dir {folder}\n", folder


def _cut(stop: list[str]) -> str:
    """The line that cuts a decoded answer at the template's stop string (SteerLM's ``<extra_id_1>``)."""
    return f"answer = answer.split({json.dumps(stop[0])})[0]\n" if stop and stop[0] == STEERLM_STOP else ""


def _text_snippet(model_id: str, name: str, value: str, stop: list[str]) -> str:
    return f"""## Use with transformers

The chat template takes the steering; `tokenizer=` lets `generate` stop at the template's stop strings.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = {json.dumps(model_id)}  # the hub repo, or the exported folder
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id)

messages = [{{"role": "user", "content": {json.dumps(EXAMPLE_PROMPT)}}}]
prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                       {name}={value})
inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=64, do_sample=False, tokenizer=tokenizer)
answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
{_cut(stop)}print(answer.strip())
```
"""


def _vision_snippet(model_id: str, name: str, value: str, stop: list[str]) -> str:
    return f"""## Use with transformers

A vision-language model: the processor's chat template takes the steering and places the image.

```python
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

model_id = {json.dumps(model_id)}  # the hub repo, or the exported folder
processor = AutoProcessor.from_pretrained(model_id)
model = AutoModelForImageTextToText.from_pretrained(model_id)

image = Image.open("picture.png").convert("RGB")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "What is in the picture?"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                       {name}={value})
inputs = processor(text=[prompt], images=[image], add_special_tokens=False, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=64, do_sample=False, tokenizer=processor.tokenizer)
answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
{_cut(stop)}print(answer.strip())
```
"""


def _vllm(model_id: str, name: str, value: str, stop: list[str], vision: bool) -> str:
    served = model_id.rstrip("/").split("/")[-1]
    content = ('[{"type": "image_url", "image_url": {"url": "https://example.com/picture.png"}}, '
               '{"type": "text", "text": "What is in the picture?"}]') if vision else json.dumps(EXAMPLE_PROMPT)
    steerlm = bool(stop) and stop[0] == STEERLM_STOP
    stop_arg = f"\n    stop={json.dumps(stop)},  # the template's stop string" if steerlm else ""
    return f"""## Use with vLLM

vLLM serves the folder as it is and hands `chat_template_kwargs` to the chat template.

```bash
vllm serve {model_id} --served-model-name {served}
```

```python
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="EMPTY")
reply = client.chat.completions.create(
    model={json.dumps(served)},
    messages=[{{"role": "user", "content": {content}}}],{stop_arg}
    extra_body={{"chat_template_kwargs": {{"{name}": {value}}}}},
)
print(reply.choices[0].message.content.strip())
```
"""


# -- a scalar-head model: what it outputs and how to score ----------------------------------------------

def _outputs(kind: str, info: Mapping, schema: Schema | None) -> list[str]:
    if kind == "apm" and schema is not None:
        return schema.names
    return list((info.get(kind) or {}).get("outputs") or [kind if kind == "cost" else "reward"])


def _scoring_format(kind: str, info: Mapping, schema: Schema | None) -> str:
    fmt = str((info.get("template") or {}).get("kind", "steerlm"))
    where = ("the `<extra_id_2>` that follows the answer (the closing `<extra_id_1>` replaced), as NeMo's "
             "regression models read" if fmt == "steerlm" else "the last token of the conversation")
    meaning = {"rm": "Higher is better: compare the rewards of answers to the same prompt.",
               "cost": "Above 0: unsafe; below 0: safe (the Safe RLHF sign). Further outputs, if any, score harm "
                       "categories."}.get(kind, "Each output predicts one attribute; round and clip it to the "
                                                "attribute's range.")
    text = (f"## Scoring\n\nThis model does not generate. A linear head (`apm_head.safetensors`: `weight [outputs, "
            f"hidden]`, `bias [outputs]`) over the transformer (`AutoModel`) reads the hidden state at {where}, and "
            f"gives one number per output: {', '.join(f'`{o}`' for o in _outputs(kind, info, schema))}. {meaning} "
            f"The conversation is rendered by the tokenizer's chat template (format `{fmt}`) without steering.\n")
    if schema is not None:
        rows = "\n".join(f"| `{a.name}` | {a.min}-{a.max} | {_cell(a.description)} |" for a in schema.attributes)
        text += f"\n| attribute | range | meaning |\n| --- | --- | --- |\n{rows}\n"
    return text


def _score_usage(kind: str, info: Mapping, schema: Schema | None, model_id: str, vision: bool) -> str:
    fetch, folder = _local(model_id)
    steer = {"apm": f"steer label {folder} --input answers.jsonl --output labelled.jsonl\n"
                    f"steer eval steerability MODEL --prompts prompts.jsonl --judge apm:{folder}",
             "rm": f"steer eval pairs {folder} --pairs pairs.jsonl\n"
                   f"steer generate MODEL \"{EXAMPLE_PROMPT}\" --best-of 4 --judge rm:{folder}",
             "cost": f"steer eval pairs {folder} --pairs pairs.jsonl\n"
                     f"steer generate MODEL \"{EXAMPLE_PROMPT}\" --best-of 4 --judge rm:RM --cost cost:{folder} "
                     "--max-cost 0"}[kind]
    text = (f"## Use with steer\n\nsteer reads the folder (its `steer.json`).\n\n```bash\n{fetch}{steer}\n```\n\n"
            f"In Python: `steer.apm.Scorer.load(\"{folder}\", kinds=(\"{kind}\",)).score(conversations)`, each "
            "conversation a list of messages ending with the assistant turn to rate.\n")
    if vision:
        return text + "\nA vision-language backbone: score with steer, which places each image's tokens as trained.\n"
    return text + "\n" + _score_snippet(kind, info, schema, model_id)


def _score_snippet(kind: str, info: Mapping, schema: Schema | None, model_id: str) -> str:
    steerlm = str((info.get("template") or {}).get("kind", "steerlm")) == "steerlm"
    mark = f'text = text.removesuffix("{STEERLM_STOP}") + "<extra_id_2>"  # the SteerLM format: read at <extra_id_2>\n'
    if schema is not None:
        ranges = json.dumps({a.name: [a.min, a.max] for a in schema.attributes})
        shown = (f"ranges = {ranges}\nprint({{name: min(max(round(v), ranges[name][0]), ranges[name][1])\n"
                 f"       for name, v in zip(ranges, scores.tolist())}})\n")
    else:
        shown = f"print(dict(zip({json.dumps(_outputs(kind, info, schema))}, scores.tolist())))\n"
    return f"""## Use with transformers

```python
import os

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

model_id = {json.dumps(model_id)}  # the hub repo, or the exported folder
folder = model_id if os.path.isdir(model_id) else snapshot_download(model_id)
tokenizer = AutoTokenizer.from_pretrained(folder)
backbone = AutoModel.from_pretrained(folder).eval()
head = load_file(os.path.join(folder, "apm_head.safetensors"))  # weight [outputs, hidden], bias [outputs]

conversation = [{{"role": "user", "content": {json.dumps(EXAMPLE_PROMPT)}}},
                {{"role": "assistant", "content": "Air scatters blue light more than red."}}]
text = tokenizer.apply_chat_template(conversation, tokenize=False)
{mark if steerlm else ""}ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
with torch.no_grad():
    hidden = backbone(**ids).last_hidden_state[0, -1].float()
scores = head["weight"] @ hidden + head["bias"]
{shown}```
"""


def _files(out: Path) -> str:
    names = sorted(p.name for p in out.iterdir() if p.is_file()) + [CARD_FILE]
    kept = [n for n in ("steer.json", "recipe.yaml", "apm_head.safetensors") if n in names]
    what = {"steer.json": "what steer reads: the kind, the template and its schema",
            "recipe.yaml": "the resolved recipe the run was trained with",
            "apm_head.safetensors": "the scalar head"}
    return "## Files\n\n" + "\n".join(f"- `{n}`: {what[n]}" for n in kept) + (
        "\n- the weights, `config.json` and the tokenizer, as `save_pretrained` writes them\n")
