"""Fused LM-head + DAPO loss kernels.

Public API (stable):

    loss, stats = fused_linear_dapo_loss(
        hidden, weight, targets, old_logprobs, advantages, mask,
        eps_low=0.2, eps_high=0.28, temperature=1.0, normalizer=None, impl="auto",
        dual_clip=3.0, log_ratio_bound=20.0, bias=None, logit_scale=1.0, softcap=None,
        rollout_logprobs=None, rollout_correction="none", rollout_correction_cap=2.0)
    logprobs, entropy = linear_logprobs(hidden, weight, targets, temperature=1.0, impl="auto",
                                        bias=None, logit_scale=1.0, softcap=None)

Logits: z = softcap(logit_scale * (hidden @ weight.T + bias)) / temperature, softcap(x) =
c * tanh(x / c) when ``softcap=c`` (Gemma-2), ``bias`` an optional [V] LM-head bias (its gradient
is returned when it requires grad), ``logit_scale`` a multiplier (Cohere's logit_scale; for
Granite pass 1 / logits_scaling).  Log-probs and entropy are those of softmax(z).

Loss per token (ratio r = exp(clamp(logp - old, -log_ratio_bound, log_ratio_bound)); where the
clamp is active the token has no gradient; None = no clamp):
obj = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), and for A < 0 the dual clip
obj = max(obj, dual_clip * A) (default 3.0 as in verl; None turns it off);
loss = -sum_t mask_t * w_t * obj_t / normalizer_t, where ``normalizer`` is one number (None ->
mask.sum(); token-mean) or a tensor shaped like ``targets`` giving each token's divisor (e.g.
seq-mean-token-mean: the token's sequence length times the number of sequences).

Rollout correction (mismatch between the sampling engine and the trainer's old policy), with
rho_t = exp(old_t - rollout_logprobs_t) (old_t = the detached current logp when
old_logprobs=None): "none" -> w_t = 1 (rollout_logprobs ignored); "tis" -> w_t = min(rho_t, C),
token-level truncated importance sampling; "mis" -> w_t = 1 if 1/C <= rho_t <= C else 0
(masked importance sampling: rejected tokens contribute nothing).  C = rollout_correction_cap > 1
and w_t is a constant.  The normalizer is exactly the one passed (None -> mask.sum()): tokens
rejected by "mis" still count in it, by design (the trainer passes the loss-token count before
rejection).

Neither function materializes the [tokens, vocab] logits.  ``impl`` picks a back-end by name
from ``dispatch.BACKENDS``: "triton" (CUDA, or CPU under TRITON_INTERPRET=1), "torch" (chunked
pure PyTorch) or "auto" (triton on CUDA tensors, torch otherwise).
"""

from __future__ import annotations

import torch

from .autograd import LossInputs, dapo_loss
from .dapo_math import ClipConfig, RolloutCorrection, inverse_normalizer
from .dispatch import BACKENDS, resolve
from .logit_head import LogitHead

__all__ = ["fused_linear_dapo_loss", "linear_logprobs", "BACKENDS"]


def _flatten(hidden, weight, targets):
    if hidden.dim() < 2 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"expected hidden [..., H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if hidden.dtype != weight.dtype:
        raise TypeError(f"hidden and weight must share a dtype ({hidden.dtype} vs {weight.dtype})")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets shape {tuple(targets.shape)} != hidden rows {tuple(hidden.shape[:-1])}")
    lead = hidden.shape[:-1]
    h = hidden.reshape(-1, hidden.shape[-1])
    if h.stride(-1) != 1:
        h = h.contiguous()
    t = targets.reshape(-1).long()
    vocab = weight.shape[0]
    t = torch.where((t >= 0) & (t < vocab), t, 0)  # padding ids (e.g. -100) must be masked out
    return lead, h, weight if weight.stride(-1) == 1 else weight.contiguous(), t


def _check_bias(bias, weight):
    if bias is None:
        return None
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [V] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    return bias if bias.stride(0) == 1 else bias.contiguous()


def _head(temperature, logit_scale, softcap) -> LogitHead:
    return LogitHead(float(temperature), float(logit_scale), None if softcap is None else float(softcap))


def fused_linear_dapo_loss(
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
    impl="auto",
    dual_clip=3.0,
    log_ratio_bound=20.0,
    bias=None,
    logit_scale=1.0,
    softcap=None,
    rollout_logprobs=None,
    rollout_correction="none",
    rollout_correction_cap=2.0,
):
    """Token-level DAPO loss straight from the last hidden states; see module docstring.

    Returns ``(loss, stats)``: ``loss`` is a 0-d float32 tensor differentiable with respect to
    ``hidden``, ``weight`` and ``bias``; ``stats`` holds ``logprobs`` and ``entropy`` (detached
    float32, shaped like ``targets``), ``clip_frac_low``, ``clip_frac_high``, ``clip_frac_dual``
    (fractions of masked tokens), ``is_weight`` (the rollout-correction weight w_t, detached
    float32 shaped like ``targets``), ``is_clip_frac`` (fraction of masked tokens whose rho is
    outside the cap: > C for "tis", outside [1/C, C] for "mis") and ``grad_token_frac`` (fraction
    of tokens with a non-zero gradient).  ``old_logprobs=None`` means on-policy samples (ratio 1,
    one update per rollout): no separate old-log-prob pass is needed.
    """
    clip = ClipConfig(
        float(eps_low),
        float(eps_high),
        None if dual_clip is None else float(dual_clip),
        None if log_ratio_bound is None else float(log_ratio_bound),
    )
    correction = RolloutCorrection(rollout_correction, float(rollout_correction_cap))
    if correction.mode != "none" and rollout_logprobs is None:
        raise ValueError(f"rollout_correction={correction.mode!r} needs rollout_logprobs")
    head = _head(temperature, logit_scale, softcap)
    lead, h, w, t = _flatten(hidden, weight, targets)
    bias = _check_bias(bias, w)
    n = h.shape[0]
    m = mask.reshape(n).bool()
    inputs = LossInputs(
        old_logprobs=None if old_logprobs is None else old_logprobs.reshape(n).float(),
        advantages=advantages.reshape(n).float(),
        mask=m,
        clip=clip,
        inv_norm=inverse_normalizer(m, normalizer),
        rollout_logprobs=(rollout_logprobs.reshape(n).float().detach() if correction.mode != "none" else None),
        correction=correction,
    )
    backend = resolve(impl, h.device)
    loss, stats = dapo_loss(backend, h, w, bias, t, inputs, head)
    for key in ("logprobs", "entropy", "is_weight"):
        stats[key] = stats[key].reshape(lead)
    return loss, stats


def linear_logprobs(hidden, weight, targets, temperature=1.0, impl="auto", bias=None, logit_scale=1.0, softcap=None):
    """Forward-only ``(logprobs, entropy)`` of ``targets`` under softmax(z), z as in the module
    docstring.  Both float32, shaped like ``targets``, detached."""
    head = _head(temperature, logit_scale, softcap)
    lead, h, w, t = _flatten(hidden, weight, targets)
    bias = _check_bias(bias, w)
    backend = resolve(impl, h.device)
    with torch.no_grad():
        lp, ent = backend.logprobs(h.detach(), w.detach(), t, head, None if bias is None else bias.detach())
    return lp.reshape(lead), ent.reshape(lead)
