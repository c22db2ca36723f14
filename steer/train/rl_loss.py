"""The pieces of constrained online RL (Safe RLHF's PPO-Lagrangian, and the critic-free group-relative
estimator), each a small function tested against hand-computed values.

Shapes: ``G`` groups (prompts) of ``K`` samples each give ``N = G * K`` sequences; per-token tensors
are ``[N, T]`` with a ``mask`` ``[N, T]`` (1 on the response's tokens).

The objective is ``max E[R] - lambda * (E[C] - d)`` with ``lambda >= 0``; the policy's advantage is
``(A_R - lambda * A_C) / (1 + lambda)`` (Safe RLHF's scaling keeps its size as lambda grows), each of
``A_R`` and ``A_C`` normalised on its own first (multi-reward GRPO users found that combining raw
scores lets the larger-scaled objective win); lambda follows projected dual ascent on ``E[C] - d``.
"""

from __future__ import annotations

import torch


def group_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """``(score - group mean) / group std`` per sample ``[N]`` (samples of one prompt are contiguous);
    with ``scale`` false only centred (Dr. GRPO: the std divides away easy prompts' signal). A group
    whose scores are all equal gets 0."""
    grouped = scores.view(-1, group_size)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(1, keepdim=True, unbiased=False) + eps)
    return centred.reshape(-1)


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """``values`` minus their mean over ``mask``, divided by their std there (0 outside the mask)."""
    if mask is None:
        return (values - values.mean()) / (values.std(unbiased=False) + eps)
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / n
    return (values - mean) / (var.sqrt() + eps) * mask


def combine(reward_adv: torch.Tensor, cost_adv: torch.Tensor | None, lam: float) -> torch.Tensor:
    """Safe RLHF's Lagrangian advantage ``(A_R - lambda * A_C) / (1 + lambda)`` (``A_R`` without a cost)."""
    if cost_adv is None:
        return reward_adv
    return (reward_adv - lam * cost_adv) / (1.0 + lam)


def dual_ascent(lam: float, mean_cost: float, threshold: float, lr: float, upper: float | None = None) -> float:
    """One projected step of ``lambda``: ``max(0, lambda + lr * (E[C] - d))``, capped at ``upper``:
    lambda grows while the cost is over the threshold and shrinks (to 0) while it is under."""
    value = max(0.0, lam + lr * (mean_cost - threshold))
    return value if upper is None else min(value, upper)


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """The per-token KL estimate ``exp(ref - logp) - (ref - logp) - 1`` (>= 0, unbiased for KL(pi || ref)
    under samples of pi), as GRPO adds it to the loss."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1.0


def clipped_objective(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                      clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's per-token surrogate to minimise, ``-min(ratio * A, clip(ratio, 1 - e, 1 + e) * A)`` with
    ``ratio = exp(logp - old_logp)``, and where the clip was active (bool), both ``[N, T]``;
    ``advantages`` is ``[N, T]`` or ``[N]`` (one per sequence)."""
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp(logps - old_logps)
    plain, clipped = ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    return -torch.minimum(plain, clipped), clipped < plain


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the tokens of ``mask`` (every response token counts once: longer
    answers are not down-weighted, as in DAPO and TRL's default)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation per token: advantages and returns ``[N, T]`` from per-token
    ``rewards`` and ``values`` (``V(s_t)``: the value before token t); the value after the last
    response token is 0. Responses are left-aligned (``mask`` is 1 then 0)."""
    n, t = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    for k in reversed(range(t)):
        following = values[:, k + 1] * mask[:, k + 1] if k + 1 < t else torch.zeros_like(running)
        delta = rewards[:, k] + gamma * following - values[:, k]
        running = (delta + gamma * lam * running * (mask[:, k + 1] if k + 1 < t else 0.0)) * mask[:, k]
        advantages[:, k] = running
    return advantages, (advantages + values) * mask


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> torch.Tensor:
    """PPO's clipped value loss ``0.5 * max((V - R)^2, (clip(V, V_old +- e) - R)^2)``, masked mean."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    worst = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(worst, mask)


def token_rewards(score: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """Per-token rewards ``[N, T]``: ``-kl_coef * KL_t`` on every response token and the sequence's
    ``score`` ``[N]`` on its last one (the reward model's word is on the whole answer)."""
    out = torch.zeros_like(mask, dtype=score.dtype)
    if kl is not None and kl_coef:
        out = out - kl_coef * kl * mask
    last = (mask.sum(1) - 1).clamp(min=0).long()
    out[torch.arange(len(score)), last] += score * (mask.sum(1) > 0)
    return out
