"""Naive full-logits implementation: the test oracle and the benchmark baseline.

It materializes the [N, V] logits, so its memory grows with N*V.  With ``compute_dtype`` set
(e.g. torch.float64) the inputs are cast first, which makes it a high-precision oracle; with the
default ``None`` the matmul runs in the input dtype and the logits are upcast to float32, which is
what a straightforward training loop does.  Every formula is written out here on purpose, apart
from the shared back-end code, so that it checks the back-ends independently.
"""

from __future__ import annotations

import torch

from .dapo_math import ClipConfig, RolloutCorrection


def reference_logits(hidden, weight, temperature=1.0, compute_dtype=None, bias=None, logit_scale=1.0, softcap=None):
    """softcap(logit_scale * (hidden @ weight.T + bias)) / temperature, differentiable."""
    if compute_dtype is not None:
        hidden, weight = hidden.to(compute_dtype), weight.to(compute_dtype)
        bias = None if bias is None else bias.to(compute_dtype)
    logits = hidden @ weight.t()
    if compute_dtype is None:
        logits = logits.float()
    if bias is not None:
        logits = logits + bias.to(logits.dtype)
    logits = logits * logit_scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return logits / temperature


def reference_logprobs(
    hidden, weight, targets, temperature=1.0, compute_dtype=None, bias=None, logit_scale=1.0, softcap=None
):
    """(logprobs, entropy, lse) per row from full logits; logprobs keep the autograd graph."""
    logits = reference_logits(hidden, weight, temperature, compute_dtype, bias, logit_scale, softcap)
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        lse = torch.logsumexp(logits, dim=-1)
        entropy = lse - (logp_all.exp() * logits).sum(-1)
    return logp, entropy, lse


def reference_dapo_loss(
    hidden,
    weight,
    targets,
    old_logprobs,
    advantages,
    mask,
    eps_low=0.2,
    eps_high=0.28,
    temperature=1.0,
    normalizer=None,
    dual_clip=3.0,
    compute_dtype=None,
    log_ratio_bound=20.0,
    bias=None,
    logit_scale=1.0,
    softcap=None,
    rollout_logprobs=None,
    rollout_correction="none",
    rollout_correction_cap=2.0,
):
    """(loss, stats) computed the textbook way; differentiable through torch autograd.

    ``old_logprobs=None`` means on-policy: old = the detached current log-probs.
    """
    ClipConfig(eps_low, eps_high, dual_clip, log_ratio_bound)  # validate
    RolloutCorrection(rollout_correction, rollout_correction_cap)
    logp, entropy, _ = reference_logprobs(
        hidden, weight, targets, temperature, compute_dtype, bias, logit_scale, softcap
    )
    adv = advantages.to(logp.dtype)
    old = logp.detach() if old_logprobs is None else old_logprobs.to(logp.dtype)
    log_ratio = logp - old
    if log_ratio_bound is not None:
        log_ratio = torch.clamp(log_ratio, -log_ratio_bound, log_ratio_bound)
    ratio = torch.exp(log_ratio)
    obj = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    if dual_clip is not None:
        obj = torch.where(adv < 0, torch.max(obj, dual_clip * adv), obj)
    mask = mask.bool()
    cap = rollout_correction_cap
    if rollout_correction == "none":
        is_weight = torch.ones_like(logp).detach()
        is_out = torch.zeros_like(mask)
    else:
        rho = torch.exp(old - rollout_logprobs.to(logp.dtype)).detach()
        if rollout_correction == "tis":
            is_weight, is_out = torch.clamp(rho, max=cap), rho > cap
        else:
            is_out = (rho > cap) | (rho < 1 / cap)
            is_weight = (~is_out).to(logp.dtype)
    if normalizer is None:
        normalizer = mask.sum().clamp_min(1)
    if isinstance(normalizer, torch.Tensor) and normalizer.dim() > 0 and normalizer.numel() == mask.numel():
        per_token = normalizer.reshape(mask.shape).to(logp.dtype)  # seq-mean-token-mean: one divisor per token
        loss = -torch.where(mask, is_weight * obj / torch.where(mask, per_token, 1.0), 0.0).sum()
    else:
        loss = -torch.where(mask, is_weight * obj, 0.0).sum() / normalizer
    with torch.no_grad():
        denom = mask.sum().clamp_min(1).to(logp.dtype)
        r = ratio.detach()
        stats = {
            "logprobs": logp.detach(),
            "entropy": entropy,
            "clip_frac_low": (mask & (adv < 0) & (r < 1 - eps_low)).sum() / denom,
            "clip_frac_high": (mask & (adv > 0) & (r > 1 + eps_high)).sum() / denom,
            "clip_frac_dual": (
                (mask & (adv < 0) & (r > dual_clip)).sum() / denom
                if dual_clip is not None
                else torch.zeros((), dtype=logp.dtype)
            ),
            "is_weight": is_weight,
            "is_clip_frac": (mask & is_out).sum() / denom,
        }
    return loss, stats
