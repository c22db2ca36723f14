"""The attribute prediction model (APM): a regression head on a causal LM's backbone, its files, and
loading a trained one to score conversations (``steer label``, the ``apm:`` judges).

The head (one output per attribute of a schema) reads the hidden state of the last token of a rated
conversation: in the SteerLM format the ``<extra_id_2>`` right after the response, as NeMo does; in
other formats the model's own end of turn. Training is :mod:`steer.train.tasks.apm`.

A run directory holds the backbone as a plain Hugging Face model (``AutoModel``: weights, or a PEFT
adapter over the base), ``apm_head.safetensors`` (``weight [n, hidden]``, ``bias [n]``), the tokenizer
whose chat template renders rated conversations, and ``steer.json`` (``kind: apm``, the schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.utils import ModelOutput

from steer.attributes import Schema
from steer.errors import UsageError
from steer.templates import STEERLM_STOP, SteerTemplate

HEAD_FILE = "apm_head.safetensors"
MISSING = -100.0  # an attribute without a label (NeMo's marker): masked out of the regression loss
APM_MARK = "<extra_id_2>"  # SteerLM's APM reads the hidden state at the attribute token after the response


def apm_text(template: SteerTemplate, messages: list[dict]) -> str:
    """The text an APM rates: the conversation ending with the rated assistant turn, without steering.

    In the SteerLM format the turn's closing ``<extra_id_1>`` becomes ``<extra_id_2>``, the position
    where NeMo's regression head reads; other formats end with the model's own end of turn.
    """
    plain = [{k: v for k, v in m.items() if k != "attributes"} for m in messages]
    text = template.render(plain)
    if template.kind == "steerlm":
        text = text.removesuffix(STEERLM_STOP) + APM_MARK
    return text


@dataclass
class APMOutput(ModelOutput):
    """``predictions [n_examples, n_attributes]`` and, with targets, the masked MSE ``loss``."""

    loss: torch.Tensor | None = None
    predictions: torch.Tensor | None = None


class AttributeModel(torch.nn.Module):
    """A backbone (``AutoModel``, maybe with LoRA) and a linear head read at chosen token positions:
    one output per name (an APM's attributes, a reward model's ``reward``, a cost model's ``cost``)."""

    def __init__(self, backbone: Any, names: Sequence[str], bias: Sequence[float] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.names = list(names)
        hidden = backbone.config.get_text_config().hidden_size
        self.head = torch.nn.Linear(hidden, len(self.names), dtype=torch.float32)
        with torch.no_grad():  # small weights, each output starting at its given bias
            self.head.weight.normal_(0.0, 0.02)
            self.head.bias.copy_(torch.tensor(list(bias) if bias is not None else [0.0] * len(self.names)))

    @classmethod
    def for_schema(cls, backbone: Any, schema: Schema) -> AttributeModel:
        """An APM: one output per attribute, each starting at the middle of its scale."""
        return cls(backbone, schema.names, [(a.min + a.max) / 2 for a in schema.attributes])

    def forward(self, input_ids: torch.Tensor, index: torch.Tensor, targets: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                **pixels: torch.Tensor) -> Any:
        """Predict ``[n_examples, n_attributes]`` from the hidden states at ``index`` (flat positions
        into ``input_ids [batch, seq]``); with ``targets`` (same shape, -100 where unknown) the masked MSE.
        ``pixels``: a vision-language backbone's image inputs (``pixel_values``, ...)."""
        hidden = self.backbone(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                               use_cache=False, **pixels).last_hidden_state
        picked = hidden.reshape(-1, hidden.shape[-1])[index]
        predictions = self.head(picked.float())
        loss = None
        if targets is not None:
            known = targets != MISSING
            err = torch.where(known, predictions - targets.float(), torch.zeros_like(predictions))
            loss = (err ** 2).sum() / known.sum().clamp(min=1)
        return APMOutput(loss=loss, predictions=predictions)


class ScoredCollator:
    """Batches of APM examples, packed into one row (positions restart per example) or right-padded;
    ``index`` holds each example's last token as a flat position."""

    def __init__(self, packing: bool, pad_token_id: int = 0) -> None:
        self.packing, self.pad_token_id = packing, pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        out: dict[str, torch.Tensor] = {}
        if all("targets" in f for f in features):
            out["targets"] = torch.tensor([list(f["targets"]) for f in features], dtype=torch.float32)
        if self.packing:
            out["input_ids"] = torch.tensor([[t for f in features for t in f["input_ids"]]])
            out["position_ids"] = torch.tensor([[p for n in lengths for p in range(n)]])
            out["index"] = torch.tensor(lengths).cumsum(0) - 1
            return out
        width = max(lengths)
        out["input_ids"] = torch.tensor([list(f["input_ids"]) + [self.pad_token_id] * (width - n)
                                         for f, n in zip(features, lengths)])
        out["attention_mask"] = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
        out["index"] = torch.tensor([row * width + n - 1 for row, n in enumerate(lengths)])
        return out


def save_apm(model: AttributeModel, folder: Path, state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write the backbone (HF weights or PEFT adapter) and the head; ``state_dict`` is the whole model's
    (gathered under FSDP / DeepSpeed), else the model's own."""
    from safetensors.torch import save_file

    state = dict(state_dict if state_dict is not None else model.state_dict())
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    head = {k.removeprefix("head."): v.detach().float().contiguous().cpu() for k, v in state.items() if k.startswith("head.")}
    folder.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(str(folder), state_dict=backbone)
    save_file(head, str(folder / HEAD_FILE), metadata={"attributes": ",".join(model.names)})


def load_apm_weights(model: AttributeModel, folder: Path) -> None:
    """Load a checkpoint written by :func:`save_apm` into ``model`` in place (resume)."""
    from safetensors.torch import load_file

    model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.backbone, load_file(str(folder / "adapter_model.safetensors")))
    elif (folder / "model.safetensors").is_file():
        model.backbone.load_state_dict(load_file(str(folder / "model.safetensors")))
    else:
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model.backbone, str(folder))


KINDS = {"apm": "an attribute prediction model", "rm": "a reward model", "cost": "a cost model"}


@dataclass
class Scorer:
    """A loaded scalar-head model (an APM, a reward model or a cost model: the same head and files):
    ``predict`` and ``score`` rate conversations ending in an assistant turn."""

    model: AttributeModel
    tokenizer: Any
    template: SteerTemplate
    context_length: int | None = None
    kind: str = "apm"
    schema: Schema | None = None  # an APM's attributes (clipped and rounded by ``values``)
    axes: tuple[str, ...] = ()  # a reward or cost model's training pair axes (empty: every pair)
    vision: Any = None  # a vision-language backbone's ImageInputs (steer.vision): it rates answers about images

    @property
    def names(self) -> list[str]:
        return self.model.names

    @classmethod
    def load(cls, path: str | Path, *, kinds: Sequence[str] = ("apm",), dtype: str = "auto",
             device: str | None = None) -> Scorer:
        """Load a run directory of one of ``kinds`` (or a checkpoint of one, or its ``steer export``)."""
        from safetensors.torch import load_file

        from steer.runs import load_model, load_tokenizer, model_template, resolve, run_info, torch_dtype

        folder, info = run_info(path)
        kind = info.get("kind")
        if kind not in kinds or not (folder / HEAD_FILE).is_file():
            wanted = " or ".join(KINDS[k] for k in kinds)
            raise UsageError(f"{folder} is not {wanted} (train one with `steer train {'|'.join(kinds)}`)")
        ref = resolve(folder)
        backbone = load_model(ref, dtype=torch_dtype(dtype), merge=True, head="none")
        schema = Schema.from_dict(info["apm"]["schema"]) if kind == "apm" else None
        model = (AttributeModel.for_schema(backbone, schema) if schema is not None
                 else AttributeModel(backbone, info[kind]["outputs"]))
        model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        from steer.vision import image_inputs

        vision = image_inputs(ref.tokenizer, backbone.config)
        tokenizer = vision.processor.tokenizer if vision is not None else load_tokenizer(ref)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        limit = getattr(backbone.config.get_text_config(), "max_position_embeddings", None)
        template = model_template(tokenizer, info)
        if vision is not None and template.image_token is None:
            template = template.with_image_token(vision.placeholder)
        return cls(model.to(device).eval(), tokenizer, template, int(limit) if limit else None,
                   kind, schema, tuple(info.get(kind, {}).get("axes") or ()), vision)

    def texts(self, conversations: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
        """What the model reads for each conversation (each ends with the assistant turn it rates)."""
        for k, conv in enumerate(conversations):
            if not conv or conv[-1].get("role") != "assistant":
                raise UsageError(f"conversation {k}: {KINDS[self.kind]} rates a conversation that ends with an "
                                 "assistant turn")
        if self.vision is None:  # a text model judges the text: image parts are left out (the guard of a VLM server)
            from steer.steering import content_text

            conversations = [[{**m, "content": content_text(m.get("content"))} for m in conv] for conv in conversations]
        return [apm_text(self.template, [dict(m) for m in conv]) for conv in conversations]

    @torch.no_grad()
    def predict(self, conversations: Sequence[Sequence[Mapping[str, Any]]], batch_size: int = 16) -> list[list[float]]:
        """Raw predictions ``[n_conversations][n_attributes]``, batched by length."""
        from steer.tokens import tokenize

        ids = [i for i, _ in tokenize(self.tokenizer, self.texts(conversations))]
        pictures: list[list[Any]] = [[] for _ in ids]
        if self.vision is not None:
            from steer.steering import content_images, image_ref
            from steer.vision import with_images

            for k, conv in enumerate(conversations):
                refs = [image_ref(p) for m in conv for p in content_images(m.get("content"))]
                ids[k], pictures[k] = with_images(self.vision, ids[k], refs, f"conversation {k}")
        if self.context_length:
            cut = [i[-self.context_length:] for i in ids]  # the head reads the end
            if self.vision is not None and any(c.count(self.vision.token_id) != i.count(self.vision.token_id)
                                               for c, i in zip(cut, ids)):
                raise UsageError(f"a conversation is longer than the model's context ({self.context_length} tokens) "
                                 "and cutting it would cut an image")
            ids = cut
        order = sorted(range(len(ids)), key=lambda k: len(ids[k]))
        out: list[list[float]] = [[] for _ in ids]
        collate = ScoredCollator(packing=False, pad_token_id=self.tokenizer.pad_token_id or 0)
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([{"input_ids": ids[k]} for k in chunk])
            if self.vision is not None:
                batch.update(self.vision.inputs(batch["input_ids"], [img for k in chunk for img in pictures[k]]))
            preds = self.model(**{k: v.to(device) for k, v in batch.items()}).predictions
            for k, row in zip(chunk, preds.tolist()):
                out[k] = row
        return out

    def values(self, prediction: Sequence[float], *, raw: bool = False) -> dict[str, float | int]:
        """One prediction by output name: an APM's clipped to each attribute's range and rounded (``raw``: as
        predicted; a reward or cost model's always raw)."""
        if raw or self.schema is None:
            return dict(zip(self.names, prediction))
        return {a.name: int(min(a.max, max(a.min, round(v)))) for a, v in zip(self.schema.attributes, prediction)}

    def score(self, conversations: Sequence[Sequence[Mapping[str, Any]]], *, raw: bool = False,
              batch_size: int = 16) -> list[dict[str, float | int]]:
        """Attribute values per conversation (see :meth:`values`)."""
        return [self.values(p, raw=raw) for p in self.predict(conversations, batch_size)]


APM = Scorer  # the attribute prediction model was the first scalar-head model: its name stays
