"""Where an SFT step of steer's goes, and where its memory goes (used by ``bench/train_sft.py``).

The step is steer's own: the model steer trains (per-example SDPA over a packed row), its chunked
fused LM head + loss on the positions that carry loss, fused AdamW. Each part is then timed alone,
forward and backward, on the inputs it really received in that step (captured with hooks):
attention (the projections, RoPE and SDPA of every layer), MLP, the RMSNorms, LM head + loss, the
optimizer step. "other" is the whole step minus those parts (embedding, residual adds, the rotary
tables, autograd bookkeeping). Medians of ``repeats``.

Memory: parameters, gradients and the two AdamW moments (float32), the tensors autograd saves for
the backward pass in one step (counted once per storage), the fused loss's buffers, and the
process itself (torch and transformers imported, before the model).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from typing import Any, Callable

import torch

MB = 2**20


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _capture(modules: list[torch.nn.Module], run: Callable[[], Any]) -> list[tuple]:
    """The (args, kwargs) each module was called with during ``run()``, detached."""
    seen: list[tuple] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        detach = lambda x: x.detach() if torch.is_tensor(x) else x  # noqa: E731
        seen.append((module, tuple(detach(a) for a in args), {k: detach(v) for k, v in kwargs.items()}))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in modules]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return seen


def _forward_backward(calls: list[tuple], autocast: Any) -> Callable[[], None]:
    """Forward and backward of each captured call, the first input as the one that needs a gradient."""
    def run() -> None:
        for module, args, kwargs in calls:
            x = args[0].clone().requires_grad_() if args else kwargs["hidden_states"].clone().requires_grad_()
            rest = args[1:] if args else ()
            kw = kwargs if args else {k: v for k, v in kwargs.items() if k != "hidden_states"}
            with autocast():
                out = module(x, *rest, **kw)
            out = out[0] if isinstance(out, tuple) else out
            out.float().backward(torch.ones_like(out, dtype=torch.float32))
    return run


def profile_step(model: Any, batch: dict, *, bf16: bool = False, repeats: int = 3) -> dict:
    """Seconds per part of one training step on ``batch`` (a packed ``[1, T]`` row with labels)."""
    from steer.data.encode import IGNORE
    from steer.train.fused_ce import linear_cross_entropy

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    targets = labels[:, 1:][keep[:, :-1]]
    inner, head = model.model, model.lm_head
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def hidden() -> torch.Tensor:
        out = inner(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        return out.last_hidden_state[keep]

    def step() -> None:
        with autocast():
            loss = linear_cross_entropy(hidden(), head.weight, targets) / max(targets.numel(), 1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    layers = list(inner.layers)
    attn = _capture([layer.self_attn for layer in layers], hidden)
    mlp = _capture([layer.mlp for layer in layers], hidden)
    norms = _capture([m for layer in layers for m in (layer.input_layernorm, layer.post_attention_layernorm)]
                     + [inner.norm], hidden)
    with torch.no_grad():
        final = hidden()

    def loss_part() -> None:
        h = final.clone().requires_grad_()
        with autocast():
            linear_cross_entropy(h, head.weight, targets).backward()

    def optimizer_part() -> None:
        for p in model.parameters():
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad
        optimizer.step()

    parts = {"attention": _median_seconds(_forward_backward(attn, autocast), repeats),
             "mlp": _median_seconds(_forward_backward(mlp, autocast), repeats),
             "rmsnorm": _median_seconds(_forward_backward(norms, autocast), repeats),
             "lm_head_loss": _median_seconds(loss_part, repeats),
             "optimizer": _median_seconds(optimizer_part, repeats)}
    model.zero_grad(set_to_none=True)
    whole = _median_seconds(step, repeats)
    parts["other"] = max(whole - sum(parts.values()), 0.0)
    return {"step_s": whole, "tokens": int(batch["input_ids"].numel()), "loss_positions": int(targets.numel()),
            "parts_s": parts, "shares": {k: v / whole for k, v in parts.items()}}


def saved_bytes(model: Any, batch: dict, *, bf16: bool = False) -> int:
    """Bytes autograd keeps for the backward pass of one step's forward (each storage once)."""
    from steer.data.encode import IGNORE
    from steer.train.fused_ce import linear_cross_entropy

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        loss = linear_cross_entropy(out.last_hidden_state[keep], model.lm_head.weight, labels[:, 1:][keep[:, :-1]])
    del loss, out
    return sum(n for ptr, n in storages.items() if ptr not in params)


def memory(model: Any, batch: dict, *, bf16: bool = False, baseline_rss_mb: float) -> dict:
    """Where a step's memory goes, in MB (see the module docstring)."""
    from steer.train.fused_ce import CHUNK

    n = sum(p.numel() for p in model.parameters())
    vocab, width = model.lm_head.weight.shape
    positions = int(batch["input_ids"].numel())
    return {"process_before_model_mb": baseline_rss_mb, "parameters_mb": 4 * n / MB, "gradients_mb": 4 * n / MB,
            "adamw_moments_mb": 8 * n / MB, "saved_activations_mb": saved_bytes(model, batch, bf16=bf16) / MB,
            "fused_loss_buffers_mb": 4 * (min(CHUNK, positions) * vocab + positions * width + vocab * width) / MB,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
