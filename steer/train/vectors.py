"""``steer vectors train``: a steering vector from contrasting activations (contrastive activation
addition over whole answers).

Two groups of answers are read through the model: the positive one (answers rated high on an
attribute, or the chosen side of preference pairs: a file of contrastive prompt pairs is written as
canonical pairs) and the negative one (rated low, or rejected). Every answer is rendered as in
training, without its rating (the template's default steering, so the vector is the answers'
difference and not the conditioning's), and at each chosen layer the output of the decoder layer is
pooled over the answer's tokens (``mean``) or taken at its first or last token (``first``, ``last``). The vector is the
positive mean minus the negative mean, per layer (``normalize``: scaled to unit length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from steer.data.encode import IGNORE, encode_many
from steer.data.records import Conversation, PreferencePair, Record
from steer.errors import UsageError
from steer.events import Events, Progress
from steer.vectors import SteeringVector, save

POOLS = ("mean", "first", "last")


@dataclass
class Groups:
    """The two sides of the contrast and how they were chosen."""

    positive: list[Conversation]
    negative: list[Conversation]
    rule: str  # e.g. "verbosity >= 3 vs <= 1", or "chosen vs rejected"
    levels: tuple[float, float] | None = None  # the mean rating of each side (attribute contrasts)


def _last_rating(record: Conversation, name: str) -> int | None:
    assistants = [m for m in record.messages if m.role == "assistant"]
    attrs = assistants[-1].attributes if assistants else None
    return None if not attrs else attrs.get(name)


def _unrated(record: Conversation) -> Conversation:
    """The conversation with no ratings: rendered under the template's defaults."""
    return replace(record, messages=[replace(m, attributes=None) for m in record.messages])


def split(records: Sequence[Record], attribute: str | None, schema: Any, *, high: int | None = None,
          low: int | None = None, limit: int | None = None) -> Groups:
    """The positive and negative answers: rated ``>= high`` vs ``<= low`` on ``attribute`` (default:
    the top and bottom quarter of its range), or, without ``attribute``, preference pairs' chosen vs
    rejected. At most ``limit`` per side (the first ones)."""
    if attribute is None:
        pairs = [r for r in records if isinstance(r, PreferencePair)]
        if not pairs:
            raise UsageError("no preference pairs in the data: give --attr NAME to contrast rated answers")
        sides = [p.sides() for p in pairs[:limit]]
        return Groups([_unrated(c) for c, _ in sides], [_unrated(r) for _, r in sides], "chosen vs rejected")
    attr = schema.get(attribute)
    span = attr.max - attr.min
    hi = attr.max - span // 4 if high is None else high
    lo = attr.min + span // 4 if low is None else low
    if hi <= lo:
        raise UsageError(f"--high ({hi}) must be above --low ({lo})")
    rated = [(r, _last_rating(r, attribute)) for r in records if isinstance(r, Conversation)]
    pos = [(r, v) for r, v in rated if v is not None and v >= hi][:limit]
    neg = [(r, v) for r, v in rated if v is not None and v <= lo][:limit]
    for side, rule in ((pos, f">= {hi}"), (neg, f"<= {lo}")):
        if not side:
            raise UsageError(f"no answers rated {attribute} {rule} in the data ({sum(v is not None for _, v in rated)} "
                             f"rated on {attribute})")
    levels = (sum(v for _, v in pos) / len(pos), sum(v for _, v in neg) / len(neg))
    return Groups([_unrated(r) for r, _ in pos], [_unrated(r) for r, _ in neg], f"{attribute} >= {hi} vs <= {lo}",
                  levels)


def pooled(model: Any, tokenizer: Any, template: Any, records: Sequence[Conversation], layers: Sequence[int], *,
           pool: str = "mean", batch_size: int = 8, max_length: int = 1024,
           events: Events | None = None) -> tuple[dict[int, Any], dict[int, float], int]:
    """Per layer, the sum over ``records`` of the layer's output pooled over each answer's tokens
    (``{layer: [hidden]}``), the mean activation norm there, and how many answers were read."""
    import torch

    encoded = [e for e in encode_many(list(records), template, tokenizer, max_length=max_length, reply=True)
               if not isinstance(e, Exception) and e.loss_tokens]
    if not encoded:
        raise UsageError("no answer could be rendered for the vector (every example failed or was empty)")
    sums = {k: torch.zeros(model.config.get_text_config().hidden_size) for k in layers}
    norms = {k: 0.0 for k in layers}
    device = model.device
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in chunk], device=device)
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in chunk], device=device)
        answer = torch.tensor([[lab != IGNORE for lab in e.labels] + [False] * (width - len(e.labels)) for e in chunk],
                              device=device)  # [B, T] the answer's tokens
        if pool in ("first", "last"):
            count = answer.long().cumsum(1)
            # the first answer token of each row, or its last
            at = (count == 1).long().argmax(1) if pool == "first" else count.argmax(1)
            answer = torch.zeros_like(answer).scatter_(1, at[:, None], True)
        weights = answer.float() / answer.sum(1, keepdim=True).clamp(min=1)  # [B, T]
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for k in layers:
            hidden = out.hidden_states[k + 1].float()  # [B, T, H]: the output of decoder layer k
            rows = torch.einsum("bt,bth->bh", weights, hidden)
            sums[k] += rows.sum(0).cpu()
            norms[k] += float(rows.norm(dim=1).sum())
        if events:
            events(Progress("activations", min(start + batch_size, len(encoded)), len(encoded)))
    return sums, {k: v / len(encoded) for k, v in norms.items()}, len(encoded)


def layer_list(spec: str | Sequence[int] | None, n_layers: int) -> list[int]:
    """``None``: the middle layer; ``"all"``; or layer indices (``"2,3"``; negative counts from the end)."""
    if spec is None:
        return [n_layers // 2]
    if spec == "all":
        return list(range(n_layers))
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            k = int(item)
        except ValueError:
            raise UsageError(f"--layers: {item!r} is not a layer index (or give 'all')") from None
        k = k + n_layers if k < 0 else k
        if not 0 <= k < n_layers:
            raise UsageError(f"--layers: {item} is out of range; this model has {n_layers} layers (0-{n_layers - 1})")
        out.append(k)
    return sorted(set(out))


def train(model: str, data: str, out: str, *, attribute: str | None = None, layers: str | None = None,
          pool: str = "mean", high: int | None = None, low: int | None = None, normalize: bool = False,
          limit: int | None = 1000, batch_size: int = 8, max_length: int = 1024, fmt: str = "auto",
          split_name: str = "train", template: str | None = None, schema: str | None = None,
          events: Events | None = None) -> dict:
    """Compute a steering vector for ``model`` from ``data`` and write it to ``out``; what was done."""
    from steer.data.loader import load
    from steer.engines.hf import HFEngine
    from steer.outputs import check_output
    from steer.vectors import is_vector_file

    if pool not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)}, not {pool!r}")
    check_output(out, inputs=[data, model], owned=is_vector_file, what="--out")  # before any work, not after
    engine = HFEngine.load(model, template=template, schema=schema)
    if engine.vision is not None:
        raise UsageError("steering vectors from a vision-language model's answers are not supported yet")
    sch = engine.template.schema
    if attribute is not None and sch is None:
        from steer.attributes import get_schema

        sch = get_schema(schema or "helpsteer")  # a model without a schema: the data's ratings are read as HelpSteer's
    records, report = load(data, format=fmt, split=split_name, schema=sch)
    groups = split(records, attribute, sch, high=high, low=low, limit=limit)
    n_layers = engine.model.config.get_text_config().num_hidden_layers
    chosen = layer_list(layers, n_layers)
    total = len(groups.positive) + len(groups.negative)

    def progress(offset: int) -> Events | None:  # one bar over both sides
        return None if events is None else (lambda e: events(Progress("activations", offset + e.done, total)))

    kw = {"pool": pool, "batch_size": batch_size, "max_length": max_length}
    pos, norm_pos, n_pos = pooled(engine.model, engine.tokenizer, engine.template, groups.positive, chosen,
                                  events=progress(0), **kw)
    neg, norm_neg, n_neg = pooled(engine.model, engine.tokenizer, engine.template, groups.negative, chosen,
                                  events=progress(len(groups.positive)), **kw)
    vectors = {}
    for k in chosen:
        v = pos[k] / n_pos - neg[k] / n_neg
        vectors[k] = v / v.norm().clamp(min=1e-12) if normalize else v
    meta = {"attribute": attribute or "preference", "contrast": groups.rule, "pool": pool,
            "normalize": "unit" if normalize else "none", "model": model,
            "model_type": engine.model.config.model_type, "num_layers": n_layers,
            "data": data, "split": split_name, "positive": n_pos, "negative": n_neg,
            "positions": "added at the last prompt token and every generated token",
            "activation_norm": {str(k): round((norm_pos[k] + norm_neg[k]) / 2, 4) for k in chosen}}
    if groups.levels is not None:
        meta["levels"] = {"positive": round(groups.levels[0], 4), "negative": round(groups.levels[1], 4)}
    save(SteeringVector(vectors, meta), out, inputs=[data, model])
    return {**meta, "out": out, "layers": chosen, "loaded": report.to_json(),
            "norms": {str(k): round(float(v.norm()), 4) for k, v in vectors.items()}}
