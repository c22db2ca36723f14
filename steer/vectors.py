"""Steering vectors: a direction per layer in a model's residual stream, its file, and the forward
hooks that add it while the model generates (contrastive activation addition).

A vector file is safetensors: one tensor ``layer.L`` ``[hidden]`` per layer it applies at, and the
metadata (``steer-vector`` JSON: the attribute, layers, how activations were pooled, normalisation,
the model it was computed on, the groups' sizes and mean levels). ``steer vectors train`` writes one
(:mod:`steer.train.vectors`).

Applied with coefficient ``c``, the output of decoder layer ``L`` gets ``c * v_L`` added at the last
prompt token and at every generated token (the positions where the answer is produced); the prompt
before it is read unchanged. Each prompt of a batch has its own vectors and coefficients: the hook
adds a ``[rows, hidden]`` delta, one row per prompt in the batch now (:class:`Applied`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.errors import UsageError

FORMAT = "steer-vector"
VERSION = 1


@dataclass
class SteeringVector:
    """``layers``: layer index -> ``[hidden]`` float32 tensor; ``meta``: what the file says about it."""

    layers: dict[int, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.layers.values())).shape[0])

    @property
    def attribute(self) -> str | None:
        return self.meta.get("attribute")


def save(vector: SteeringVector, path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Write ``vector`` to ``path`` atomically (never onto an input, never over a file that is not one)."""
    from safetensors.torch import save

    from steer.outputs import atomic_output

    meta = {"format": FORMAT, "version": VERSION, **vector.meta, "layers": sorted(vector.layers)}
    blob = save({f"layer.{k}": v.detach().float().contiguous().cpu() for k, v in sorted(vector.layers.items())},
                metadata={FORMAT: json.dumps(meta)})
    with atomic_output(path, binary=True, inputs=list(inputs), owned=is_vector_file, what="--out") as handle:
        handle.write(blob)
    return Path(path)


def is_vector_file(path: Path) -> bool:
    """Whether ``path`` is a steering-vector file (what ``save`` may replace)."""
    try:
        _read(path)
    except UsageError:
        return False
    return True


_CACHE: dict[tuple[str, int, int], SteeringVector] = {}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _key(path: str | Path) -> tuple[str, int, int]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise UsageError(f"steering vector not found: {p}", field="vectors") from None
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)


def digest(path: str | Path) -> str:
    """The file's sha256 (first 16 hex digits; cached while it is unchanged): what a batch output
    records, so that a re-run with a changed vector under the same name is refused, not reused."""
    import hashlib

    key = _key(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return _DIGESTS[key]


def load(path: str | Path) -> SteeringVector:
    """The vector in ``path`` (cached while the file is unchanged); a missing or foreign file is a
    one-line error naming it."""
    key = _key(path)
    if key not in _CACHE:
        _CACHE[key] = _read(Path(path))
    return _CACHE[key]


def _read(path: Path) -> SteeringVector:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(FORMAT)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UsageError(f"{path} is not a steering-vector file ({err})", field="vectors") from None
    if raw is None:
        raise UsageError(f"{path} is a safetensors file without steer-vector metadata (write it with "
                         "`steer vectors train`)", field="vectors")
    meta = json.loads(raw)
    layers: dict[int, Any] = {}
    for name, tensor in tensors.items():
        head, _, index = name.partition(".")
        if head != "layer" or not index.isdigit() or tensor.dim() != 1:
            raise UsageError(f"{path}: unexpected tensor {name} {tuple(tensor.shape)} (layer.N [hidden] only)",
                             field="vectors")
        layers[int(index)] = tensor.float()
    if not layers or len({t.shape[0] for t in layers.values()}) != 1:
        raise UsageError(f"{path}: needs one or more layer.N tensors of one size", field="vectors")
    return SteeringVector(layers, meta)


def parse_spec(spec: str) -> tuple[str, float]:
    """``FILE[:COEF]`` -> (file, coefficient; 1.0 when not given)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("a steering vector is FILE[:COEF]", field="vectors")
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass  # a ':' that is part of the path
    return spec, 1.0


def decoder_layers(model: Any) -> Any:
    """The model's decoder layers (a ``ModuleList``, one entry per layer, in order), wrapped or not
    (PEFT, a vision-language model's language model)."""
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(config, "num_hidden_layers", None)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    for name, m in found:
        if name.endswith("layers"):
            return m
    if found:
        return found[0][1]
    raise UsageError("steering vectors need a decoder with a list of layers; this model has none that steer knows")


def check(vector: SteeringVector, model: Any, where: str) -> None:
    """Refuse a vector that does not fit ``model`` (its hidden size, its layers)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden, n = int(config.hidden_size), int(config.num_hidden_layers)
    if vector.hidden_size != hidden:
        raise UsageError(f"{where}: the vector is for hidden size {vector.hidden_size}; this model's is {hidden}"
                         + (f" (computed on {vector.meta['model']})" if vector.meta.get("model") else ""), field="vectors")
    bad = [k for k in vector.layers if not 0 <= k < n]
    if bad:
        raise UsageError(f"{where}: layer(s) {bad} out of range; this model has {n} layers", field="vectors")


def deltas(model: Any, specs: Sequence[Sequence[tuple[str, float]]]) -> dict[int, Any]:
    """What each prompt adds per layer: ``{layer: [prompts, hidden]}``, the sum of ``coef * v`` over
    the prompt's vectors (zero rows for a prompt without). Empty when no prompt has a vector."""
    import torch

    if not any(specs):
        return {}
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    out: dict[int, Any] = {}
    for row, spec in enumerate(specs):
        for path, coef in spec:
            vector = load(path)
            check(vector, model, str(path))
            for layer, v in vector.layers.items():
                if layer not in out:
                    out[layer] = torch.zeros(len(specs), int(config.hidden_size))
                out[layer][row] += coef * v
    return out


class Applied:
    """Hooks in place on a model's decoder layers; ``rows`` says which prompts (indices into the
    deltas) the batch going through the model holds now, in order (the decoder sets it)."""

    def __init__(self, added: Mapping[int, Any]) -> None:
        self.added = dict(added)
        self.rows: list[int] = []
        self._cache: dict[int, Any] = {}  # layer -> delta on the model's device and dtype

    def hook(self, layer: int) -> Any:
        import torch

        def add(module: Any, args: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output  # [rows, seq, hidden]
            delta = self._cache.get(layer)
            if delta is None or delta.device != hidden.device or delta.dtype != hidden.dtype:
                delta = self._cache[layer] = self.added[layer].to(hidden.device, hidden.dtype)
            if len(self.rows) != hidden.shape[0]:
                raise RuntimeError(f"steering hook: {hidden.shape[0]} rows in the batch, {len(self.rows)} set")
            rows = delta[self.rows]
            # the last position only: the last prompt token in a prefill, the new token in a step
            hidden = torch.cat([hidden[:, :-1], hidden[:, -1:] + rows[:, None, :]], dim=1)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return add


@contextmanager
def applied(model: Any, added: Mapping[int, Any]) -> Iterator[Applied | None]:
    """Forward hooks adding ``added`` (from :func:`deltas`) while the block runs; None (no hooks,
    no cost) when nothing is added."""
    if not added:
        yield None
        return
    layers = decoder_layers(model)
    state = Applied(added)
    handles = [layers[k].register_forward_hook(state.hook(k)) for k in sorted(added)]
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


def allow_list(specs: Sequence[str], model: Any = None) -> dict[str, str]:
    """A server's steering vectors by name from ``NAME=FILE`` or ``FILE`` (named by its stem), each
    file read (and checked against ``model`` when given); a name given twice is an error."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        if not name or not path:
            raise UsageError(f"--vector {spec!r}: NAME=FILE or FILE")
        if name in out:
            raise UsageError(f"--vector: the name {name!r} is given twice")
        vector = load(path)
        if model is not None:
            check(vector, model, f"--vector {spec}")
        out[name] = path
    return out


def describe(path: str | Path) -> dict:
    """What ``steer vectors show`` prints: the file's metadata, per-layer norms and its size."""
    vector = load(path)
    return {"path": str(path), **vector.meta, "hidden_size": vector.hidden_size,
            "norms": {str(k): round(float(v.norm()), 4) for k, v in sorted(vector.layers.items())},
            "bytes": os.path.getsize(path)}
