"""Load the model to train: a hub id or local directory (optionally QLoRA), or a config from scratch,
then wrap it with LoRA (PEFT) or leave it for full fine-tuning."""

from __future__ import annotations

from typing import Any

from steer.config import ModelConfig, TrainConfig
from steer.errors import UsageError
from steer.runs import torch_dtype

def attention(cfg: ModelConfig, packing: bool) -> str:
    """The attention implementation to load: packed rows on SDPA use steer's per-example SDPA."""
    if cfg.attn_implementation == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            raise UsageError("model.attn_implementation is flash_attention_2 but flash-attn is not installed "
                             "(pip install flash-attn, on a CUDA machine), or use sdpa")
        return "flash_attention_2"
    if packing and cfg.attn_implementation == "sdpa":
        from steer.train.packing import register_varlen

        return register_varlen()
    return cfg.attn_implementation


def load_base(cfg: ModelConfig, *, packing: bool, quantize: bool = False, backbone: bool = False) -> Any:
    """The causal LM to fine-tune (random init when ``from_scratch``); ``backbone``: the transformer
    without its LM head (``AutoModel``), what an attribute prediction model puts its head on."""
    import transformers

    from steer.vision import is_vlm

    dtype = torch_dtype(cfg.dtype)
    attn = attention(cfg, packing)
    config = model_config(cfg)
    lm = transformers.AutoModelForImageTextToText if is_vlm(config) else transformers.AutoModelForCausalLM
    auto = transformers.AutoModel if backbone else lm
    if cfg.from_scratch is not None:
        return auto.from_config(config, dtype=dtype, attn_implementation=attn)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn, "trust_remote_code": cfg.trust_remote_code}
    if quantize:
        kwargs["quantization_config"] = _qlora_config(dtype)
    weights, adapter = base_weights(cfg.name_or_path)
    try:
        model = auto.from_pretrained(weights, **kwargs)
    except OSError as err:
        raise UsageError(f"cannot load model {cfg.name_or_path!r}: {str(err).strip().splitlines()[0]}") from None
    if adapter is None:
        return model
    if backbone or quantize:
        raise UsageError(f"model.name_or_path {cfg.name_or_path} is a LoRA run: export it first "
                         f"(steer export {cfg.name_or_path} --out MERGED) and train on the merged folder")
    from peft import PeftModel

    # a LoRA run (SFT before DPO, say) continues from its adapter merged into the base
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def model_config(cfg: ModelConfig) -> Any:
    """The transformers config of the model a recipe trains (from ``from_scratch``, or read from its folder or hub id)."""
    from transformers import AutoConfig

    if cfg.from_scratch is not None:
        spec = dict(cfg.from_scratch)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise UsageError("model.from_scratch needs a model_type (for example llama)")
        try:
            return AutoConfig.for_model(model_type, **spec)
        except (ValueError, TypeError) as err:
            raise UsageError(f"model.from_scratch: {err}") from None
    name = str(cfg.name_or_path)
    try:
        return AutoConfig.from_pretrained(base_weights(name)[0], trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load the config of model {name!r}: {str(err).strip().splitlines()[0]}") from None


# Where a vision-language model keeps its vision tower, and the modules LoRA never adapts.
VISION_MODULES = ("vision_tower", "visual", "vision_model")
NOT_LANGUAGE = (*VISION_MODULES, "multi_modal_projector", "lm_head")


def _is_under(name: str, modules: tuple[str, ...]) -> bool:
    return any(part in modules for part in name.split("."))


def freeze(model: Any, cfg: ModelConfig) -> list[str]:
    """Freeze what ``model.freeze`` names (``vision``: a vision-language model's vision tower); returns
    the frozen modules' names."""
    names = list(VISION_MODULES) if cfg.freeze == "vision" else [] if cfg.freeze == "none" else list(cfg.freeze)
    frozen = []
    for name, module in model.named_modules():
        if name and name.split(".")[-1] in names and not _is_under(name.rsplit(".", 1)[0], tuple(names)):
            module.requires_grad_(False)
            frozen.append(name)
    if isinstance(cfg.freeze, list) and not frozen:
        raise UsageError(f"model.freeze: no module is named any of {cfg.freeze}")
    return frozen


def language_targets(model: Any, targets: list[str] | str) -> list[str]:
    """LoRA's target modules on a vision-language model: the linear layers of its language model only
    (all of them for ``all-linear``, else those whose name ends with a listed one), by full name."""
    import torch

    wanted = None if targets == "all-linear" else ([targets] if isinstance(targets, str) else list(targets))
    found = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and not _is_under(name, NOT_LANGUAGE)
             and (wanted is None or name.split(".")[-1] in wanted)]
    if not found:
        raise UsageError(f"train.lora.target_modules: no linear layer of the language model matches {targets}")
    return found


def base_weights(name: str | None) -> tuple[str | None, str | None]:
    """``(weights, adapter)`` of a model argument: a steer LoRA run (or adapter folder) is its base
    model plus the adapter; anything else is itself."""
    from pathlib import Path

    ref = model_ref(name)
    if ref and Path(ref).is_dir() and (Path(ref) / "adapter_config.json").is_file():
        from steer.runs import resolve

        found = resolve(ref)
        return model_ref(found.weights), found.adapter
    return ref, None


def model_ref(name: str | None) -> str | None:
    """A local directory made absolute (adapter configs and steer.json point at it), a known alias
    its pulled folder; a hub id as given."""
    from pathlib import Path

    from steer.models import local_path

    name = local_path(name) if name else name
    return str(Path(name).resolve()) if name and Path(name).is_dir() else name


def _qlora_config(dtype: Any) -> Any:
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError("train.method qlora needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); "
                         "use lora or full on this machine")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def build_model(cfg: ModelConfig, train: TrainConfig, *, packing: bool, backbone: bool = False) -> Any:
    """The model ready for the Trainer: base (+ LoRA adapter), gradient checkpointing as asked
    (``backbone``: without the LM head, see :func:`load_base`)."""
    if cfg.from_scratch is not None and train.method != "full":
        raise UsageError("a model trained from scratch needs train.method full (LoRA needs pretrained weights)")
    from steer.vision import is_vlm

    model = load_base(cfg, packing=packing, quantize=train.method == "qlora", backbone=backbone)
    vlm = is_vlm(model.config)
    if vlm or isinstance(cfg.freeze, list):  # a list names modules of any model
        freeze(model, cfg)
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if train.method == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if train.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train.gradient_checkpointing)
    lora = LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                      target_modules=language_targets(model, train.lora.target_modules) if vlm else train.lora.target_modules,
                      task_type="FEATURE_EXTRACTION" if backbone else "CAUSAL_LM")
    try:
        model = get_peft_model(model, lora)
    except ValueError as err:
        raise UsageError(f"train.lora.target_modules: {err}") from None
    if train.gradient_checkpointing:
        model.enable_input_require_grads()
    return model
