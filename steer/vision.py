"""Images for vision-language models: the processor, the text an image part renders as, how many
tokens each image becomes, and the pixel inputs of a batch.

A prompt is rendered as text by the steering template, each image part as the model's placeholder
(``<image>`` for Llava, ``<|vision_start|><|image_pad|><|vision_end|>`` for Qwen2-VL); it is
tokenized with offsets like any text, then each image's token is repeated as many times as the
processor would (:meth:`ImageInputs.expand`), so training, generation and the exported processor
place image features at the same positions. Pixels are computed per batch by the processor's image
processor (:meth:`ImageInputs.pixels`), never cached with the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.errors import DataError, UsageError

# The placeholder a model family's own chat template writes for one image part, where it is not
# the processor's image token alone.
PLACEHOLDERS = {"qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
                "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>"}
# What a processor may return beside the token ids, all of which the model's forward takes
# (``mm_token_type_ids``: 1 at image tokens; Qwen2-VL computes its multimodal RoPE from it).
PIXEL_INPUTS = ("pixel_values", "image_grid_thw", "image_sizes", "mm_token_type_ids")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def is_vlm(config: Any) -> bool:
    """Whether a transformers config is a vision-language model's (it has a vision tower)."""
    return getattr(config, "vision_config", None) is not None


@dataclass
class ImageInputs:
    """A vision-language model's processor and how steer uses it."""

    processor: Any
    placeholder: str  # the text one image part renders as
    token_id: int  # the token the processor repeats once per image feature
    _counts: dict = field(default_factory=dict, repr=False)  # image size -> tokens
    _typed: bool | None = field(default=None, repr=False)  # the processor returns mm_token_type_ids

    def tokens(self, image: Any) -> int:
        """How many ``token_id`` tokens ``image`` (PIL) becomes (the processor's own expansion;
        cached by image size, the only thing it depends on)."""
        key = image.size
        if key not in self._counts:
            try:
                out = self.processor(text=[self.placeholder], images=[image], return_tensors="pt")
            except (ValueError, RuntimeError, TypeError) as err:  # e.g. an image too small or too thin to patch
                raise DataError("bad image", f"the processor cannot read a {image.size[0]}x{image.size[1]} image: "
                                f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
            self._counts[key] = int((out["input_ids"] == self.token_id).sum())
        return self._counts[key]

    def expand(self, ids: Sequence[int], offsets: Sequence[tuple[int, int]], images: Sequence[Any],
               where: str = "example") -> tuple[list[int], list[tuple[int, int]]]:
        """``ids`` and their character ``offsets`` with each image token repeated for its image
        (``images`` in order, PIL); a count of placeholders that does not match is a DataError."""
        found = sum(1 for t in ids if t == self.token_id)
        if found != len(images):
            raise DataError("image count", f"{where}: {found} image placeholders in the text but {len(images)} images")
        out_ids: list[int] = []
        out_offsets: list[tuple[int, int]] = []
        k = 0
        for t, off in zip(ids, offsets):
            n = 1
            if t == self.token_id:
                n = self.tokens(images[k])
                k += 1
            out_ids += [t] * n
            out_offsets += [off] * n
        return out_ids, out_offsets

    def pixels(self, images: Sequence[Any]) -> dict[str, Any]:
        """The model's pixel inputs for ``images`` (PIL, in the order their tokens appear in the batch)."""
        if not images:
            return {}
        try:
            out = self.processor.image_processor(images=list(images), return_tensors="pt")
        except (ValueError, RuntimeError, TypeError) as err:
            raise DataError("bad image", f"the processor cannot read an image: {type(err).__name__}: {err}") from None
        return {k: out[k] for k in PIXEL_INPUTS if k in out}

    def inputs(self, input_ids: Any, images: Sequence[Any]) -> dict[str, Any]:
        """Everything the model takes beside ``input_ids [batch, seq]`` (and its mask) for a batch whose
        ``images`` appear in this order: the pixel inputs, and the token types where the processor
        gives them (1 at image tokens, 0 elsewhere: padding included)."""
        if not images:
            return {}
        expected = sum(self.tokens(img) for img in images)
        if int((input_ids == self.token_id).sum()) != expected:  # an image edited after its tokens were prepared
            raise DataError("image changed", f"the batch has {int((input_ids == self.token_id).sum())} image tokens "
                            f"but its images make {expected}: prepare the data again (steer data prepare --force)")
        out = self.pixels(images)
        if self.typed():
            out["mm_token_type_ids"] = (input_ids == self.token_id).long()
        return out

    def typed(self) -> bool:
        """Whether the processor returns ``mm_token_type_ids`` (asked once, with a blank image)."""
        if self._typed is None:
            from PIL import Image

            probe = self.processor(text=[self.placeholder], images=[Image.new("RGB", (64, 64), "white")], return_tensors="pt")
            self._typed = "mm_token_type_ids" in probe
        return self._typed


def with_images(vision: ImageInputs, ids: Sequence[int], refs: Sequence[Any], where: str) -> tuple[list[int], list[Any]]:
    """``ids`` of a rendered prompt or conversation with its images' tokens expanded, and its images
    (PIL, from ``refs`` in order); a missing or bad image, or a count that does not match, is a UsageError."""
    from steer import images

    try:
        pictures = [images.load(ref, f"{where}: image {k + 1}") for k, ref in enumerate(refs)]
        expanded, _ = vision.expand(ids, [(0, 0)] * len(ids), pictures, where)
    except DataError as err:
        raise UsageError(str(err), field="messages") from None
    return expanded, pictures


def image_inputs(source: str | Path, config: Any = None) -> ImageInputs | None:
    """The image inputs of a model's processor (its folder or hub id; ``config``: the model's
    config, when known); None for a text model (no image processor)."""
    path = Path(str(source))
    if path.is_dir():
        if not any((path / name).is_file() for name in PROCESSOR_FILES):
            return None
    elif config is None or not is_vlm(config):
        return None
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(source))
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, and ImportError/RuntimeError from a missing backend
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot load the processor of {source}: {first}") from None
    if getattr(processor, "image_processor", None) is None or not getattr(processor, "image_token", None):
        return None
    tokenizer = processor.tokenizer
    if not getattr(tokenizer, "chat_template", None) and getattr(processor, "chat_template", None):
        tokenizer.chat_template = processor.chat_template  # some models keep their template on the processor only
    token = processor.image_token
    token_id = processor.tokenizer.convert_tokens_to_ids(token)
    model_type = getattr(config, "model_type", None) if config is not None else _model_type(path)
    return ImageInputs(processor, PLACEHOLDERS.get(model_type or "", token), int(token_id))


def _folder_config(folder: Path) -> dict:
    import json

    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _model_type(folder: Path) -> str | None:
    return _folder_config(folder).get("model_type")


def folder_is_vlm(folder: str | Path) -> bool:
    """Whether a model folder or hub id holds a vision-language model (its config has a vision tower);
    a config that cannot be read: no (loading the model then says why)."""
    path = Path(str(folder))
    if path.is_dir():
        return "vision_config" in _folder_config(path)
    from transformers import AutoConfig

    try:
        return is_vlm(AutoConfig.from_pretrained(str(folder)))
    except Exception:  # noqa: BLE001 - offline, unknown, remote code: the load that follows names the problem
        return False


def scratch_spec(model_type: str, processor: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                 image_size: int = 32, patch_size: int = 8) -> dict:
    """A ``model.from_scratch`` dict for a tiny vision-language model that reads ``processor``'s images
    and tokens (see :func:`make_processor`): Llava (a CLIP vision tower, a Llama)."""
    vocab = len(processor.tokenizer)
    text = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": heads, "max_position_embeddings": 512,
            "tie_word_embeddings": False}
    token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    if model_type == "llava":
        return {"model_type": "llava", "image_token_id": token, "vision_feature_layer": -1,
                "vision_feature_select_strategy": "full", "projector_hidden_act": "gelu",
                "text_config": {"model_type": "llama", **text},
                "vision_config": {"model_type": "clip_vision_model", "hidden_size": hidden // 2,
                                  "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
                                  "image_size": image_size, "patch_size": patch_size}}
    raise UsageError(f"no tiny config for model type {model_type!r} (llava)")


def make_processor(tokenizer: Any, out: Path, *, model_type: str = "llava", image_size: int = 32,
                   patch_size: int = 8) -> Any:
    """A processor for a from-config vision-language model (the tests' tiny models and the visual
    quickstart's): ``tokenizer`` with the image token added, and a plain image processor; saved to
    ``out``. Returns the processor."""
    if model_type == "llava":
        from transformers import CLIPImageProcessor, LlavaProcessor

        if "<image>" not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        ip = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
        processor = LlavaProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch_size,
                                   vision_feature_select_strategy="full", num_additional_image_tokens=1)
    else:  # Qwen2-VL's processor needs torchvision for its video half (tests build it in process)
        raise UsageError(f"no processor recipe for model type {model_type!r} (llava)")
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out))
    return processor
