"""Cross-entropy of a linear LM head, computed in chunks, with no full logits tensor.

With a large vocabulary and a small model, the ``[tokens, vocab]`` logits, their softmax and their
gradient are most of a training step's memory traffic (and, freshly allocated every step, its page
faults). Here the head runs on ``CHUNK`` positions at a time: each chunk's logits give its loss and,
at once, the gradients of the hidden states and of the head weight, so the biggest buffer is
``CHUNK x vocab`` and it is reused. Same loss and gradients as ``cross_entropy(hidden @ W.T, y,
reduction="sum")`` (tested to 1e-5); the backward pass only scales the saved gradients.
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK = 1024


class LinearCrossEntropy(torch.autograd.Function):
    """``sum_i CE(hidden[i] @ weight.T, targets[i])``; hidden ``[n, h]``, weight ``[vocab, h]``, targets ``[n]``."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int = CHUNK) -> torch.Tensor:
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # under autocast the three matmuls run in its dtype (bf16: AMX on CPU, tensor cores on GPU), as
        # the model's own linear layers do; the softmax and the sums stay float32
        device = hidden.device.type
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        w = weight.to(low) if low is not None else weight
        # float32 inputs: one logits buffer for every chunk (a fresh [chunk, vocab] tensor per chunk
        # costs page faults); other dtypes compute in their own dtype and upcast per chunk
        buffer = (torch.empty((min(chunk, hidden.shape[0]), weight.shape[0]), dtype=torch.float32, device=hidden.device)
                  if low is None and hidden.dtype == weight.dtype == torch.float32 else None)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            hc = h.to(w.dtype)
            logits = (torch.mm(h, weight.T, out=buffer[: h.shape[0]]) if buffer is not None
                      else (hc @ w.T).float())  # [c, vocab], float32
            picked = logits.gather(1, t[:, None]).squeeze(1)
            peak = logits.amax(dim=1, keepdim=True)
            probs = logits.sub_(peak).exp_()  # in place from here on: the buffer becomes the softmax
            total = probs.sum(dim=1, keepdim=True)
            loss += (peak.squeeze(1) + total.squeeze(1).log() - picked).sum()
            if not (need_h or need_w):
                continue
            probs.div_(total)[torch.arange(t.shape[0], device=t.device), t] -= 1.0  # d loss / d logits
            if need_h:
                grad_h[start:start + chunk] = (probs.to(w.dtype) @ w).to(hidden.dtype)
            if need_w and low is not None:
                grad_w += probs.T.to(low) @ hc
            elif need_w:
                grad_w.addmm_(probs.T, h.float())
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple:
        grad_h, grad_w = ctx.saved_tensors
        dh = grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None
        dw = (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None
        return dh, dw, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = CHUNK) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` (see the module docstring)."""
    return LinearCrossEntropy.apply(hidden, weight, targets, chunk)


class LinearLogprobs(torch.autograd.Function):
    """``log_softmax(hidden @ weight.T)[i, targets[i]]`` per row: hidden ``[n, h]``, weight ``[vocab, h]``,
    targets ``[n]`` -> ``[n]`` float32.

    Unlike the summed loss above, a preference loss weighs every position differently (through the
    sequence sums and the sigmoid), so the backward cannot be computed ahead: the forward keeps only
    each row's log-normaliser and the backward recomputes the logits chunk by chunk.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int = CHUNK) -> torch.Tensor:
        w = _compute_weight(hidden, weight)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        norm = torch.empty_like(out)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = (h.to(w.dtype) @ w.T).float()  # [c, vocab]
            norm[start:start + chunk] = torch.logsumexp(logits, dim=1)
            out[start:start + chunk] = logits.gather(1, t[:, None]).squeeze(1) - norm[start:start + chunk]
        ctx.save_for_backward(hidden, weight, targets, norm)
        ctx.chunk, ctx.dtype = chunk, w.dtype  # the backward runs outside autocast: keep the forward's dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        hidden, weight, targets, norm = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(ctx.dtype)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        for start in range(0, hidden.shape[0], ctx.chunk):
            h, t = hidden[start:start + ctx.chunk], targets[start:start + ctx.chunk]
            g = grad_out[start:start + ctx.chunk].float()
            hc = h.to(w.dtype)
            # d logp / d logits = onehot(t) - softmax, scaled by the incoming gradient of each row
            d = (hc @ w.T).float().sub_(norm[start:start + ctx.chunk, None]).exp_().mul_(-g[:, None])
            d[torch.arange(t.shape[0], device=t.device), t] += g
            if need_h:
                grad_h[start:start + ctx.chunk] = (d.to(w.dtype) @ w).to(hidden.dtype)
            if need_w:
                grad_w += (d.T.to(w.dtype) @ hc).float()
        return grad_h, grad_w.to(weight.dtype) if grad_w is not None else None, None, None


def _compute_weight(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The head weight in the dtype its matmuls run in: autocast's (as the model's own layers), else its own."""
    device = hidden.device.type
    return weight.to(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else weight


def linear_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                    chunk: int = CHUNK) -> torch.Tensor:
    """Per-row log-probability of ``targets`` under ``hidden @ weight.T`` (see :class:`LinearLogprobs`); ``[n]``."""
    return LinearLogprobs.apply(hidden, weight, targets, chunk)
