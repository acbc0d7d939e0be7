"""Naive full-logits implementation: the test oracle and the benchmark baseline.

It materializes the [N, V] logits, so its memory grows with N*V.  With ``compute_dtype`` set
(e.g. torch.float64) the inputs are cast first, which makes it a high-precision oracle; with the
default ``None`` the matmul runs in the input dtype and the logits are upcast to float32, which is
what a straightforward training loop does.
"""

from __future__ import annotations

import torch

from .dapo_math import ClipConfig


def reference_logprobs(hidden, weight, targets, temperature=1.0, compute_dtype=None):
    """(logprobs, entropy, lse) per row from full logits; logprobs keep the autograd graph."""
    if compute_dtype is not None:
        hidden, weight = hidden.to(compute_dtype), weight.to(compute_dtype)
    logits = hidden @ weight.t()
    if compute_dtype is None:
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        lse = torch.logsumexp(logits, dim=-1)
        entropy = lse - (logp_all.exp() * logits).sum(-1)
    return logp, entropy, lse


def reference_dapo_loss(hidden, weight, targets, old_logprobs, advantages, mask, eps_low=0.2,
                        eps_high=0.28, temperature=1.0, normalizer=None, dual_clip=None,
                        compute_dtype=None):
    """(loss, stats) computed the textbook way; differentiable through torch autograd."""
    ClipConfig(eps_low, eps_high, dual_clip)  # validate
    logp, entropy, _ = reference_logprobs(hidden, weight, targets, temperature, compute_dtype)
    adv = advantages.to(logp.dtype)
    ratio = torch.exp(logp - old_logprobs.to(logp.dtype))
    obj = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    if dual_clip is not None:
        obj = torch.where(adv < 0, torch.max(obj, dual_clip * adv), obj)
    mask = mask.bool()
    if normalizer is None:
        normalizer = mask.sum().clamp_min(1)
    loss = -torch.where(mask, obj, 0.0).sum() / normalizer
    with torch.no_grad():
        denom = mask.sum().clamp_min(1).to(logp.dtype)
        r = ratio.detach()
        stats = {
            "logprobs": logp.detach(),
            "entropy": entropy,
            "clip_frac_low": (mask & (adv < 0) & (r < 1 - eps_low)).sum() / denom,
            "clip_frac_high": (mask & (adv > 0) & (r > 1 + eps_high)).sum() / denom,
            "clip_frac_dual": ((mask & (adv < 0) & (r > dual_clip)).sum() / denom
                               if dual_clip is not None else torch.zeros((), dtype=logp.dtype)),
        }
    return loss, stats
