"""Fused LM-head + DAPO loss kernels.

Public API (stable):

    loss, stats = fused_linear_dapo_loss(hidden, weight, targets, old_logprobs, advantages, mask,
                                         eps_low=0.2, eps_high=0.28, temperature=1.0,
                                         normalizer=None, impl="auto", dual_clip=None)
    logprobs, entropy = linear_logprobs(hidden, weight, targets, temperature=1.0, impl="auto")

Neither materializes the [tokens, vocab] logits.  ``impl`` picks a back-end by name from
``dispatch.BACKENDS``: "triton" (CUDA, or CPU under TRITON_INTERPRET=1), "torch" (chunked
pure PyTorch) or "auto" (triton on CUDA tensors, torch otherwise).
"""

from __future__ import annotations

import torch

from .autograd import dapo_loss
from .dapo_math import ClipConfig, inverse_normalizer
from .dispatch import BACKENDS, resolve

__all__ = ["fused_linear_dapo_loss", "linear_logprobs", "BACKENDS"]


def _flatten(hidden, weight, targets):
    if hidden.dim() < 2 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"expected hidden [..., H] and weight [V, H], got {tuple(hidden.shape)} "
                         f"and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        raise TypeError(f"hidden and weight must share a dtype ({hidden.dtype} vs {weight.dtype})")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets shape {tuple(targets.shape)} != hidden rows "
                         f"{tuple(hidden.shape[:-1])}")
    lead = hidden.shape[:-1]
    h = hidden.reshape(-1, hidden.shape[-1])
    if h.stride(-1) != 1:
        h = h.contiguous()
    t = targets.reshape(-1).long()
    vocab = weight.shape[0]
    t = torch.where((t >= 0) & (t < vocab), t, 0)  # padding ids (e.g. -100) must be masked out
    return lead, h, weight if weight.stride(-1) == 1 else weight.contiguous(), t


def _check_temperature(temperature):
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def fused_linear_dapo_loss(hidden, weight, targets, old_logprobs, advantages, mask, eps_low=0.2,
                           eps_high=0.28, temperature=1.0, normalizer=None, impl="auto",
                           dual_clip=None):
    """Token-level DAPO loss straight from the last hidden states; see module docstring.

    Returns ``(loss, stats)``: ``loss`` is a 0-d float32 tensor differentiable with respect to
    ``hidden`` and ``weight``; ``stats`` holds ``logprobs`` and ``entropy`` (detached float32,
    shaped like ``targets``), ``clip_frac_low``, ``clip_frac_high``, ``clip_frac_dual`` (fractions
    of masked tokens) and ``grad_token_frac`` (fraction of tokens with a non-zero gradient).
    ``old_logprobs=None`` means on-policy samples (ratio 1, one update per rollout): no separate
    old-log-prob pass is needed.
    """
    clip = ClipConfig(float(eps_low), float(eps_high),
                      None if dual_clip is None else float(dual_clip))
    temperature = _check_temperature(temperature)
    lead, h, w, t = _flatten(hidden, weight, targets)
    n = h.shape[0]
    adv = advantages.reshape(n).float()
    m = mask.reshape(n).bool()
    inv_norm = inverse_normalizer(m, normalizer)
    backend = resolve(impl, h.device)
    if old_logprobs is not None:
        old = old_logprobs.reshape(n).float()
    elif getattr(backend, "ON_POLICY_NATIVE", False):
        old = None
    else:  # this back-end's kernel needs explicit old log-probs: take them from its forward-only pass
        old = backend.logprobs(h, w, t, temperature)[0].detach()
    loss, stats = dapo_loss(backend, h, w, t, old, adv, m, clip, inv_norm, temperature)
    stats["logprobs"] = stats["logprobs"].reshape(lead)
    stats["entropy"] = stats["entropy"].reshape(lead)
    return loss, stats


def linear_logprobs(hidden, weight, targets, temperature=1.0, impl="auto"):
    """Forward-only ``(logprobs, entropy)`` of ``targets`` under softmax(hidden @ weight.T / T).

    Both float32, shaped like ``targets``, detached.
    """
    temperature = _check_temperature(temperature)
    lead, h, w, t = _flatten(hidden, weight, targets)
    backend = resolve(impl, h.device)
    with torch.no_grad():
        lp, ent = backend.logprobs(h.detach(), w.detach(), t, temperature=temperature)
    return lp.reshape(lead), ent.reshape(lead)
