"""The losses of the scalar-head models: the Bradley-Terry reward loss and Safe RLHF's cost loss.

Each takes per-pair scores ``[B]`` (a pair's chosen side is the preferred one: the better answer for a
reward model, the *safer* answer for a cost model) and returns a per-pair loss ``[B]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, strength: torch.Tensor | None = None,
                  mode: str = "ignore") -> torch.Tensor:
    """``-log sigmoid(r_c - r_r - m)`` per pair ``[B]``; with ``mode`` ``margin`` m is the pair's strength
    (HelpSteer2's preference magnitude), with ``weight`` the loss is scaled by it (scaled BT, as in
    HelpSteer2-Preference), with ``ignore`` neither."""
    margin = strength if mode == "margin" and strength is not None else 0.0
    loss = -F.logsigmoid(chosen - rejected - margin)
    return loss * strength if mode == "weight" and strength is not None else loss


def sign_term(cost: torch.Tensor, sign: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``-log sigmoid(s * C(y))`` per response ``[N]`` (``s`` +1 unsafe, -1 safe, 0 unknown: no term),
    times ``weight`` (severity) where given."""
    loss = -F.logsigmoid(sign * cost) * (sign != 0)
    return loss * weight if weight is not None else loss


def cost_loss(safer: torch.Tensor, unsafer: torch.Tensor, safer_sign: torch.Tensor, unsafer_sign: torch.Tensor, *,
              sign_weight: float = 1.0, safer_weight: torch.Tensor | None = None,
              unsafer_weight: torch.Tensor | None = None, paired: torch.Tensor | None = None) -> torch.Tensor:
    """Safe RLHF's cost loss per pair ``[B]``: ``-log sigmoid(C(y_unsafer) - C(y_safer))`` (the less safe
    answer costs more) plus ``sign_weight`` times the sign terms of both answers, so that C > 0 means unsafe.
    ``paired`` (bool ``[B]``) marks real pairs; elsewhere ``safer`` is a single rated answer: its sign term only."""
    pairwise = -F.logsigmoid(unsafer - safer)
    if paired is not None:
        pairwise = pairwise * paired
    signs = sign_term(safer, safer_sign, safer_weight) + sign_term(unsafer, unsafer_sign, unsafer_weight)
    return pairwise + sign_weight * signs
