"""The DPO family of preference losses, on per-pair sequence log-probabilities.

Everything here is plain tensor arithmetic over ``[pairs]`` vectors (the model, the packing and the
fused head are the task's business, :mod:`steer.train.tasks.dpo`), so each loss is checked against
a hand computation. Formulas (``r(y) = log pi(y|x) - log pi_ref(y|x)``, ``d = r(y_w) - r(y_l)``):

- ``sigmoid`` (DPO): ``-(1-e) log s(beta d) - e log s(-beta d)`` (``e``: label smoothing, cDPO);
- ``ipo``: ``(d - 1/(2 beta))^2``; ``hinge``: ``relu(1 - beta d)``;
- ``simpo``: reference-free, token means ``m``: ``-log s(beta (m_w - m_l) - gamma)``;
- ``orpo``: ``NLL(y_w) + beta * -log s(log odds(y_w) - log odds(y_l))``, odds from the token-mean probability;
- ``rpo``: ``sigmoid`` plus ``sft_weight`` x the chosen response's token-mean NLL (any loss may add it);
- R-DPO (``length_alpha``): ``length_alpha * (|y_w| - |y_l|)`` is subtracted inside the loss;
- LD-DPO (``ld_alpha``): applied when the sums are taken (:func:`sequence_logps`);
- strength ``margin`` subtracts a pair's strength inside the loss, ``weight`` multiplies its loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from steer.config import DPOConfig


@dataclass
class PairLogps:
    """Per-pair sums over response tokens, each ``[pairs]``; ``ref_*`` None without a reference."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor  # response lengths in tokens (float)
    rejected_tokens: torch.Tensor
    chosen_nll: torch.Tensor  # token-mean NLL of the chosen response (unweighted by LD-DPO)
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    strength: torch.Tensor | None = None


@dataclass
class PairLoss:
    """Per-pair loss and implicit rewards, each ``[pairs]``."""

    loss: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor


def sequence_logps(token_logps: torch.Tensor, example: torch.Tensor, examples: int,
                   ld_alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum per example of labelled tokens' log-probs (``token_logps``, ``example`` ``[n]``: the example of
    each, in order, chosen ``2i`` and rejected ``2i + 1``); LD-DPO weighs tokens past the shorter side's
    length by ``ld_alpha``. Returns ``(weighted sums, plain sums, token counts)``, each ``[examples]``."""
    counts = torch.bincount(example, minlength=examples)
    plain = torch.zeros(examples, dtype=token_logps.dtype, device=token_logps.device).index_add(0, example, token_logps)
    if ld_alpha == 1.0:
        return plain, plain, counts.to(token_logps.dtype)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(example.numel(), device=example.device) - starts[example]  # position within its response
    shorter = torch.minimum(counts[0::2], counts[1::2]).repeat_interleave(2)  # per example: its pair's shorter side
    weight = torch.where(rank < shorter[example], 1.0, ld_alpha).to(token_logps.dtype)
    weighted = torch.zeros_like(plain).index_add(0, example, token_logps * weight)
    return weighted, plain, counts.to(token_logps.dtype)


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` from ``log p`` (clamped below 0: a certain response has infinite odds)."""
    mean_logp = mean_logp.clamp(max=-1e-6)
    return mean_logp - torch.log(-torch.expm1(mean_logp))


def pair_loss(cfg: DPOConfig, s: PairLogps) -> PairLoss:
    """The loss of ``cfg.loss`` per pair, with its implicit rewards (``beta`` x the log-ratio, or x the
    token-mean log-prob for the reference-free losses)."""
    mean = cfg.average_logps or cfg.loss in ("simpo", "orpo")
    c, r = s.chosen, s.rejected
    if mean:
        c, r = c / s.chosen_tokens.clamp(min=1), r / s.rejected_tokens.clamp(min=1)
    if cfg.loss in ("simpo", "orpo"):
        chosen_reward, rejected_reward = cfg.beta * c, cfg.beta * r
        delta = c - r if cfg.loss == "simpo" else _log_odds(c) - _log_odds(r)
    else:
        if s.ref_chosen is None or s.ref_rejected is None:
            raise ValueError(f"loss {cfg.loss} needs reference log-probabilities")
        rc, rr = s.ref_chosen, s.ref_rejected
        if mean:
            rc, rr = rc / s.chosen_tokens.clamp(min=1), rr / s.rejected_tokens.clamp(min=1)
        chosen_reward, rejected_reward = cfg.beta * (c - rc), cfg.beta * (r - rr)
        delta = (c - rc) - (r - rr)
    scale = 1.0 if cfg.loss == "orpo" else cfg.beta
    logits = scale * delta - cfg.length_alpha * (s.chosen_tokens - s.rejected_tokens)
    if cfg.loss == "simpo":
        logits = logits - cfg.gamma
    if cfg.strength == "margin" and s.strength is not None:
        logits = logits - s.strength
    if cfg.loss == "ipo":
        loss = (logits / cfg.beta - 1 / (2 * cfg.beta)) ** 2
    elif cfg.loss == "hinge":
        loss = torch.relu(1 - logits)
    elif cfg.loss == "orpo":
        loss = cfg.beta * -F.logsigmoid(logits)
    else:  # sigmoid, rpo, simpo
        eps = cfg.label_smoothing
        loss = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    if cfg.nll_weight:
        loss = loss + cfg.nll_weight * s.chosen_nll
    if cfg.strength == "weight" and s.strength is not None:
        loss = loss * s.strength
    return PairLoss(loss, chosen_reward.detach(), rejected_reward.detach())
