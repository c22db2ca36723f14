"""Typed recipes: YAML files validated by pydantic, ``--set a.b=v`` overrides, resolved dumps.

Precedence is code defaults < recipe YAML < ``--set``. Unknown keys are errors that name the
key path. The resolved recipe (after overrides) is what gets written to a run directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steer.attributes import SCHEMAS, Attribute, Schema, get_schema
from steer.errors import ConfigError, UsageError
from steer.templates import DEFAULT_SYSTEM, SteerTemplate, for_tokenizer


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AttributeSpec(Section):
    """One attribute of a custom schema."""

    name: str = Field(description="the attribute's name, as `--attr NAME=V` and the rendered string spell it")
    min: int = Field(default=0, description="the lowest level")
    max: int = Field(default=4, description="the highest level")
    default: int = Field(default=2, description="the level used when a request does not set it")
    description: str = Field(default="", description="what the attribute means (shown by `steer attrs` and in model cards)")


class SchemaSpec(Section):
    """A custom attribute schema (ordered)."""

    name: str = Field(description="the schema's name (in steer.json and /v1/models)")
    attributes: list[AttributeSpec] = Field(min_length=1, description="the attributes, in the order they are rendered")


class ModelConfig(Section):
    """The model to train or serve: a hub id or local directory, or an architecture from scratch."""

    name_or_path: str | None = Field(default=None, description="a hub id, a local model folder, a steer run "
                                     "directory or a `steer models` alias (exactly one of this and from_scratch)")
    tokenizer: str | None = Field(default=None, description="the tokenizer, when not the model's own (required "
                                  "with from_scratch)")
    from_scratch: dict[str, Any] | None = Field(
        default=None, description="a transformers config dict (model_type, sizes): train from random init"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="the weights' dtype when loaded (auto: as saved, float32 on CPU)")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        default="sdpa", description="the attention kernel (flash_attention_2 needs a CUDA GPU and flash-attn)")
    trust_remote_code: bool = Field(default=False, description="run the model repository's own Python code")
    freeze: Literal["vision", "none"] | list[str] = Field(
        default="vision", description="what trains not at all: a vision-language model's vision tower (vision), "
        "nothing (none), or a list of module names; LoRA adapts the language model only either way")

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.name_or_path is None) == (self.from_scratch is None):
            raise ValueError("give exactly one of model.name_or_path and model.from_scratch")
        if self.from_scratch is not None and self.tokenizer is None:
            raise ValueError("model.from_scratch needs model.tokenizer")
        return self


class TemplateConfig(Section):
    """How conversations are rendered: format, attribute schema, default system message."""

    kind: Literal["steerlm", "chat", "janus"] = Field(
        default="steerlm", description="steerlm: NeMo's SteerLM format with an attribute line; chat: the model's own "
        "chat template with the attributes in the system message; janus: value statements as the system message")
    schema_: str | SchemaSpec | None = Field(
        default="helpsteer", alias="schema", description="the attribute schema: a known name (`steer attrs "
        "--schema`), a custom one, or null for value statements only")
    default_system: str = Field(default=DEFAULT_SYSTEM, description="the system message when a row has none")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _known_schema(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in SCHEMAS:
            try:
                get_schema(value)
            except UsageError as err:  # pydantic reports ValueErrors with the key path
                raise ValueError(str(err)) from None
        return value

    def build_schema(self) -> Schema | None:
        """The attribute schema this template steers with (None: value statements only)."""
        if self.schema_ is None:
            return None
        if isinstance(self.schema_, str):
            return get_schema(self.schema_)
        attrs = tuple(Attribute(a.name, a.min, a.max, a.default, a.description) for a in self.schema_.attributes)
        return Schema(self.schema_.name, attrs)

    def build(self, tokenizer: Any = None, *, schema: bool = True) -> SteerTemplate:
        """The steering template this section describes, over ``tokenizer`` (``schema=False``: the same
        format without attribute lines, what an attribute prediction model reads)."""
        return for_tokenizer(self.kind, self.build_schema() if schema else None, tokenizer, self.default_system)


class SourceConfig(Section):
    """One data source of a mixture."""

    path: str = Field(description="a hub dataset id, or a local file or folder (JSONL, JSON, Parquet, CSV, Arrow)")
    format: str = Field(default="auto", description="the upstream format (helpsteer, helpsteer2, oasst, multifaceted, "
                        "pku-saferlhf, beavertails, steer, ...; `steer data inspect` lists them); auto: by its columns")
    split: str = Field(default="train", description="the split of a hub dataset or a folder with split files")
    weight: float = Field(default=1.0, gt=0, description="the mixture weight: the whole part repeats the source, the "
                          "fraction is a seeded sample of it")
    max_examples: int | None = Field(default=None, gt=0, description="at most this many records of the source (its first)")


class DataConfig(Section):
    """Training data: sources with weights, a validation split, length handling."""

    sources: list[SourceConfig] = Field(min_length=1, description="the training sources, mixed by weight")
    validation: list[SourceConfig] = Field(default_factory=list, description="validation sources (eval_loss)")
    validation_fraction: float = Field(default=0.0, ge=0, lt=1, description="else hold out this share of the "
                                       "training records (seeded)")
    max_length: int = Field(default=2048, gt=8, description="the longest example in tokens (and a packed row's length)")
    overlong: Literal["truncate", "reject"] = Field(default="truncate", description="an example past max_length: "
                                                    "cut (the answer's end is lost) or left out and counted")
    packing: bool = Field(default=True, description="pack examples into rows of max_length; attention never crosses "
                          "examples (position ids restart)")
    skip_invalid: bool = Field(default=False, description="leave out and count malformed rows instead of stopping "
                               "at the first (routine ones, like empty answers, are always counted)")
    num_proc: int = Field(default=1, ge=1, description="processes that tokenize")
    cache_dir: str | None = Field(default=None, description="where prepared data is cached (default: steer's cache "
                                  "/prepared); a change of data, tokenizer or settings prepares anew")


class LoraConfig(Section):
    """LoRA adapter settings (PEFT)."""

    r: int = Field(default=16, gt=0, description="the adapter's rank")
    alpha: int = Field(default=32, gt=0, description="the scale numerator: updates are scaled by alpha / r")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | str = Field(default="all-linear", description="the modules adapted: all-linear "
                                            "(every linear layer but the head) or a list of module names")


class TrainConfig(Section):
    """Optimisation, checkpoints and logging."""

    method: Literal["lora", "full", "qlora"] = Field(default="lora", description="lora (an adapter over frozen "
                                                      "weights), full (every weight), qlora (LoRA over a 4-bit base; a CUDA GPU)")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="the adapter (lora and qlora)")
    epochs: float = Field(default=1.0, gt=0, description="passes over the training data (fractions allowed)")
    max_steps: int = Field(default=-1, description="optimizer steps; overrides epochs when positive")
    learning_rate: float = Field(default=2e-4, gt=0, description="the peak learning rate (AdamW)")
    lr_scheduler: str = Field(default="cosine", description="a transformers scheduler: cosine, linear, constant, "
                              "constant_with_warmup, ...")
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1, description="the share of the steps that warm up linearly")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW's decoupled weight decay")
    max_grad_norm: float = Field(default=1.0, ge=0, description="clip the gradient's norm to this (0: no clipping)")
    batch_size: int = Field(default=8, gt=0, description="sequences (or packed rows) per device")
    grad_accum: int = Field(default=1, gt=0, description="micro-batches per optimizer step: the global batch is "
                            "batch_size x grad_accum x processes")
    seed: int = Field(default=42, description="the seed of initialisation, data order and dropout")
    save_steps: int = Field(default=500, gt=0, description="a checkpoint every this many steps (resume from any)")
    save_total_limit: int | None = Field(default=2, description="keep at most this many checkpoints (null: all)")
    eval_steps: int | None = Field(default=None, description="evaluate on the validation data every this many steps")
    logging_steps: int = Field(default=10, gt=0, description="metrics (metrics.jsonl, trackers) every this many steps")
    gradient_checkpointing: bool = Field(default=False, description="recompute activations in the backward pass: "
                                         "less memory, about a third more compute")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="autocast over float32 master weights; auto: model.dtype on a GPU, off on CPU "
                                    "(bf16 pays off on CPUs with AMX or AVX512-BF16)")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="experiment trackers that also get every logged metric and the recipe: "
        "tensorboard (in the run directory), wandb (Weights & Biases; WANDB_MODE=offline writes local run files), "
        "mlflow (MLFLOW_TRACKING_URI: a server, sqlite:///mlflow.db or a folder)")
    project: str = Field(default="steer", description="the W&B project and the MLflow experiment the run is filed "
                                                      "under (WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME win when set)")
    run_name: str | None = Field(default=None, description="the tracked run's name (default: the output folder's name)")
    output_dir: str = Field(default="runs/sft", description="the run directory: weights, checkpoints, recipe.yaml, "
                            "steer.json, metrics.jsonl")

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> Any:
        # TrainingArguments' spellings: one name, "none", "all" (every tracker that is installed); no repeats
        if isinstance(value, str):
            value = [] if value == "none" else [value]
        if isinstance(value, list) and "all" in value:
            import importlib.util

            value = [t for t in ("tensorboard", "wandb", "mlflow") if importlib.util.find_spec(t) is not None]
        return list(dict.fromkeys(value)) if isinstance(value, list) else value

    @model_validator(mode="before")
    @classmethod
    def _legacy_tensorboard(cls, data: Any) -> Any:
        # recipes written before report_to said `tensorboard: true`; it still means what it meant
        if isinstance(data, dict) and "tensorboard" in data:
            data = dict(data)
            on = data.pop("tensorboard")
            if on not in (True, False, None):
                raise ValueError(f"tensorboard: a boolean (got {on!r}); report_to is the list of trackers")
            current = data.get("report_to") or []
            current = ([] if current == "none" else [current]) if isinstance(current, str) else current
            if on and "tensorboard" not in current:
                data["report_to"] = [*current, "tensorboard"]
        return data


class DistributedConfig(Section):
    """Multi-process settings: the engine is torchrun + transformers.Trainer."""

    strategy: Literal["none", "ddp", "fsdp", "deepspeed"] = Field(
        default="none", description="none (one process, or plain DDP under torchrun), ddp, fsdp, deepspeed (ZeRO)")
    config: str | None = Field(default=None, description="FSDP or DeepSpeed JSON config (relative to the working directory, else to the recipe)")
    nproc: int = Field(default=1, ge=1, description="processes on this machine (`--nproc` wins); >1 relaunches "
                       "under torchrun")


class SFTRecipe(Section):
    """A fine-tuning recipe (SteerLM, Janus, or a mixture)."""

    kind: Literal["sft"] = Field(default="sft", description="the recipe's kind: it runs as `steer train sft`")
    model: ModelConfig
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)


class APMRecipe(SFTRecipe):
    """An attribute prediction model: a regression head over a causal LM, one output per attribute
    of ``template.schema``, trained on the same data pipeline and trainer as SFT."""

    kind: Literal["apm"] = Field(default="apm", description="the recipe's kind: it runs as `steer train apm`")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _has_schema(self) -> APMRecipe:
        if self.template.schema_ is None:
            raise ValueError("template.schema: an attribute prediction model needs a schema (its outputs)")
        return self


REFERENCE_FREE = ("simpo", "orpo")


class DPOConfig(Section):
    """Preference optimisation: the loss, its hyper-parameters, length control and the reference."""

    loss: Literal["sigmoid", "ipo", "hinge", "simpo", "rpo", "orpo"] = Field(
        default="sigmoid", description="sigmoid (DPO), ipo, hinge, simpo (reference-free), rpo (DPO + NLL on the "
                                       "chosen response), orpo (reference-free odds ratio + NLL)")
    beta: float = Field(default=0.1, gt=0, description="the inverse temperature of the implicit reward; "
                                                        "for orpo, the weight of the odds-ratio term")
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5, description="conservative DPO: the assumed share "
                                                                          "of flipped labels (sigmoid, rpo, simpo)")
    gamma: float = Field(default=0.5, ge=0, description="simpo: the target margin subtracted inside the sigmoid")
    sft_weight: float | None = Field(default=None, ge=0, description="weight of the chosen response's token-mean "
                                                                      "NLL added to the loss (default 1 for rpo, else 0)")
    average_logps: bool = Field(default=False, description="length-normalised log-probabilities (token means, "
                                                           "the Tulu 3 recipe) instead of sums")
    ld_alpha: float = Field(default=1.0, gt=0, le=1, description="LD-DPO: weight of the tokens past the shorter "
                                                                 "response's length (1: off)")
    length_alpha: float = Field(default=0.0, ge=0, description="R-DPO: the margin is reduced by this times the "
                                                               "length difference in tokens (0: off)")
    strength: Literal["ignore", "weight", "margin"] = Field(
        default="ignore", description="a pair's preference strength (HelpSteer2/3): weights its loss or is a margin")
    reference: Literal["auto", "adapter", "precompute", "model", "none"] = Field(
        default="auto", description="auto: the base with the LoRA adapter disabled, else log-probabilities "
                                    "precomputed before training; model: a frozen copy; none for simpo and orpo")
    axes: list[str] = Field(default_factory=list, description="the preference axes to train on (PKU-SafeRLHF: "
                                                              "helpfulness, harmlessness); empty: every pair")
    condition: dict[str, str] = Field(default_factory=dict, description="a value statement per axis, rendered into "
                                      "both sides' prompts: one model then follows either priority")

    @model_validator(mode="after")
    def _reference_fits(self) -> DPOConfig:
        free = self.loss in REFERENCE_FREE
        if free and self.reference not in ("auto", "none"):
            raise ValueError(f"loss {self.loss} is reference-free: leave reference at auto (or none)")
        if not free and self.reference == "none":
            raise ValueError(f"loss {self.loss} needs a reference (auto, adapter, precompute or model)")
        return self

    @property
    def nll_weight(self) -> float:
        """The weight of the chosen response's NLL term (ORPO's is always 1)."""
        if self.loss == "orpo":
            return 1.0
        return self.sft_weight if self.sft_weight is not None else (1.0 if self.loss == "rpo" else 0.0)


class DPORecipe(SFTRecipe):
    """Preference optimisation on pairs (the DPO family), through the same loop and data pipeline as SFT."""

    kind: Literal["dpo"] = Field(default="dpo", description="the recipe's kind: it runs as `steer train dpo`")  # type: ignore[assignment]
    dpo: DPOConfig = Field(default_factory=DPOConfig)

    @model_validator(mode="after")
    def _reference_method(self) -> DPORecipe:
        if self.dpo.reference == "adapter" and self.train.method == "full":
            raise ValueError("dpo.reference adapter needs train.method lora (full weights: precompute or model)")
        return self


class RMConfig(Section):
    """A Bradley-Terry reward model: a scalar head trained on preference pairs."""

    strength: Literal["ignore", "weight", "margin"] = Field(
        default="ignore", description="a pair's preference strength (HelpSteer2/3): a margin inside the sigmoid, "
                                      "or a weight on the pair's loss (scaled BT, HelpSteer2-Preference)")
    regularization: float = Field(default=0.0, ge=0, description="weight of the mean squared score: keeps "
                                                                 "scores near 0 (Safe RLHF's models use one)")
    length_balance: Literal["none", "bins"] = Field(
        default="none", description="bins: in each bin of relative length difference keep as many training pairs "
                                    "where the longer answer wins as where it loses (A Long Way to Go)")
    init_head: dict[str, float] = Field(default_factory=dict, description="start the head from an APM run "
                                        "(model.name_or_path): the weighted sum of these attributes' outputs")
    axes: list[str] = Field(default_factory=list, description="the preference axes to train on (empty: every pair)")


class CostConfig(Section):
    """Safe RLHF's cost model: the less safe answer costs more, and a cost's sign is its safety label."""

    sign_weight: float = Field(default=1.0, ge=0, description="weight of the sign terms -log sigmoid(s * C(y)), "
                                                              "s = +1 unsafe, -1 safe")
    severity: bool = Field(default=False, description="weight an unsafe answer's sign term by its severity (1-3, "
                                                      "PKU-SafeRLHF's levels)")
    regularization: float = Field(default=0.0, ge=0, description="weight of the mean squared cost")
    categories: list[str] = Field(default_factory=list, description="harm categories to predict beside the cost "
                                  "(a moderation model): one output each, binary cross-entropy on the pairs' "
                                  "harm_categories labels (PKU-SafeRLHF's 19)")
    category_weight: float = Field(default=1.0, ge=0, description="weight of the categories' loss")
    init_head: dict[str, float] = Field(default_factory=dict, description="start the head from an APM run's attributes")
    axes: list[str] = Field(default_factory=lambda: ["harmlessness"], description="the pair axes whose chosen side "
                                                                                 "is the safer answer")


class RMRecipe(SFTRecipe):
    """A reward model on preference pairs, through the same loop and data pipeline as SFT."""

    kind: Literal["rm"] = Field(default="rm", description="the recipe's kind: it runs as `steer train rm`")  # type: ignore[assignment]
    rm: RMConfig = Field(default_factory=RMConfig)


class CostRecipe(SFTRecipe):
    """A cost model on safety-labelled preference pairs, through the same loop and data pipeline as SFT."""

    kind: Literal["cost"] = Field(default="cost", description="the recipe's kind: it runs as `steer train cost`")  # type: ignore[assignment]
    cost: CostConfig = Field(default_factory=CostConfig)


class RLConfig(Section):
    """Online RL: rollouts from the policy, a reward and a cost from judges, a KL penalty to the reference,
    and the Lagrangian ``E[R] - lambda * (E[C] - threshold)`` with lambda by dual ascent (Safe RLHF)."""

    algorithm: Literal["grpo", "ppo"] = Field(
        default="grpo", description="grpo: critic-free, advantages normalised within each prompt's group of samples; "
                                    "ppo: a value head (reward and cost values) and GAE, as Safe RLHF's PPO-Lagrangian")
    reward: str = Field(description="the reward's judge: rm:PATH, apm:PATH (with reward_attribute), oracle (the "
                                    "synthetic world's, with reward_attribute), length (the length-only control), fkgl")
    reward_attribute: str | None = Field(default=None, description="the attribute of a judge that measures several")
    cost: str | None = Field(default=None, description="the cost's judge (cost:PATH, or any judge above): none for "
                                                        "unconstrained RL")
    cost_attribute: str | None = Field(default=None, description="the attribute of a cost judge that measures several")
    threshold: float = Field(default=0.0, description="the bound d on the expected cost")
    lambda_init: float = Field(default=0.0, ge=0, description="the Lagrange multiplier's start")
    lambda_lr: float = Field(default=0.05, ge=0, description="dual ascent's step: lambda += lr * (mean cost - d)")
    lambda_max: float | None = Field(default=None, gt=0, description="an upper bound on lambda")
    group_size: int = Field(default=4, ge=1, description="samples per prompt (grpo: the group; at least 2)")
    max_new_tokens: int = Field(default=64, gt=0, description="the longest rollout answer")
    temperature: float = Field(default=1.0, gt=0, description="rollout sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1, description="rollout nucleus sampling")
    kl_coef: float = Field(default=0.05, ge=0, description="weight of the KL to the reference (grpo: the k3 "
                                                           "estimate in the loss; ppo: a per-token reward penalty)")
    clip: float = Field(default=0.2, gt=0, description="PPO's ratio clip (and the value clip)")
    scale_rewards: bool = Field(default=True, description="grpo: divide by the group's std (false: centre only, "
                                                          "as Dr. GRPO)")
    value_coef: float = Field(default=0.5, ge=0, description="ppo: weight of the value loss")
    gamma: float = Field(default=1.0, gt=0, le=1, description="ppo: discount")
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="ppo: GAE's lambda")
    monitor: list[str] = Field(default_factory=list, description="judges whose findings on every rollout are "
                               "logged as judge/NAME (no effect on training): the oracle beside a length reward")
    attributes: dict[str, int] = Field(default_factory=dict, description="steering of every rollout (a row's own "
                                                                         "attributes win)")
    values: list[str] = Field(default_factory=list, description="value statements of every rollout (a row's own win)")

    @model_validator(mode="after")
    def _consistent(self) -> RLConfig:
        if self.algorithm == "grpo" and self.group_size < 2:
            raise ValueError("group_size: grpo normalises within a prompt's samples, so it needs at least 2")
        if self.cost is None and self.lambda_init:
            raise ValueError("lambda_init needs a cost judge (rl.cost)")
        return self


class RLRecipe(SFTRecipe):
    """Online constrained RL from a policy run (``model.name_or_path``), on prompt rows (``steer batch``'s
    input: ``prompt`` or ``messages``, optional steering, anything a judge reads)."""

    kind: Literal["rl"] = Field(default="rl", description="the recipe's kind: it runs as `steer train rl`")  # type: ignore[assignment]
    rl: RLConfig

    @model_validator(mode="after")
    def _rollouts(self) -> RLRecipe:
        if self.data.validation or self.data.validation_fraction:
            raise ValueError("data.validation: an RL run is measured by its rollouts' metrics; evaluate the policy "
                             "afterwards with `steer eval steerability` or `steer batch`")
        return self


RECIPES: dict[str, type[Section]] = {"sft": SFTRecipe, "apm": APMRecipe, "dpo": DPORecipe, "rm": RMRecipe,
                                     "cost": CostRecipe, "rl": RLRecipe}


def _coerce(raw: str) -> Any:
    """Parse an override value the way YAML would (numbers, booleans, lists, null)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override to a raw recipe dict in place (list items by index)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    path, raw = assignment.split("=", 1)
    keys = [k for k in path.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: empty key in {path!r}")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {path}: {where} is not an index of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {'.'.join(keys[:depth])} is not a section")
        if last:
            node[key] = _coerce(raw)
        else:
            if isinstance(node, dict) and (key not in node or node[key] is None):
                node[key] = {}
            node = node[key]


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names (and aliases) of the section at ``loc``, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = _section_type(field.annotation)
    return [f.alias or n for n, f in current.model_fields.items()] if current else []


def _suggest_key(key: str, names: list[str]) -> list[str]:
    """The key meant: one the typo abbreviates (``lr`` for ``learning_rate``: its words' initials, or
    a prefix), else the closest spelling."""
    initials = [n for n in names if "_" in n and key == "".join(part[0] for part in n.split("_"))]
    prefixed = [n for n in names if len(key) >= 3 and n.startswith(key)]
    return (initials or prefixed)[:1] or difflib.get_close_matches(key, names, n=1)


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found:
            return found
    return None


def _explain(err: ValidationError, model: type[BaseModel], origin: str) -> ConfigError:
    """One line per problem, each naming the key path; the first one leads."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            hint = _suggest_key(str(loc[-1]), _field_names(model, loc[:-1]))
            lines.append(f"unknown key {path}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        elif e["type"] == "missing":
            lines.append(f"missing key {path}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {msg}" + (f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""))
    return ConfigError(f"{origin}: " + "; ".join(lines))


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), kind: str | None = None) -> Section:
    """Load, override and validate a recipe file; errors name the file and the key path.

    ``kind`` is what the caller expects (``sft``, ``apm``); None takes the recipe's own ``kind`` key.
    ``distributed.config`` is found relative to the working directory, else to the recipe file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a recipe is UTF-8 YAML)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
    for assignment in overrides:
        apply_override(data, assignment)
    declared = data.get("kind", "sft")
    if kind is not None and declared != kind:
        raise ConfigError(f"{path}: this is a {declared!r} recipe (its kind key), not {kind!r}: "
                          f"run it with `steer train {declared}`")
    recipe = validate_recipe(data, kind=kind or str(declared), origin=str(path))
    return find_distributed_config(recipe, str(path), path.parent)


def find_distributed_config(recipe: Section, origin: str, folder: Path | None = None) -> Section:
    """``distributed.config`` as found relative to the working directory, else to ``folder`` (the
    recipe's); one that is in neither place is refused now rather than when training starts."""
    config = recipe.distributed.config  # type: ignore[attr-defined]
    if config and not Path(config).exists():
        if folder is None or not (folder / config).exists():
            where = "the working directory or to the recipe" if folder is not None else "the working directory"
            raise ConfigError(f"{origin}: distributed.config {config} not found (relative to {where})")
        recipe.distributed.config = str(folder / config)  # type: ignore[attr-defined]
    return recipe


def validate_recipe(data: dict, kind: str = "sft", origin: str = "recipe") -> Section:
    """Validate a raw recipe dict against the schema of ``kind``."""
    if kind not in RECIPES:
        raise ConfigError(f"unknown recipe kind {kind!r} (known: {', '.join(RECIPES)})")
    model = RECIPES[kind]
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _explain(err, model, origin) from None


def dump_recipe(recipe: Section) -> str:
    """The fully resolved recipe as YAML (every default spelled out)."""
    return yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True)


def write_resolved(recipe: Section, run_dir: str | Path) -> Path:
    """Write ``recipe.yaml`` (resolved) into ``run_dir`` and return its path."""
    from steer.runs import RECIPE_FILE

    out = Path(run_dir) / RECIPE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_recipe(recipe), encoding="utf-8")
    return out
