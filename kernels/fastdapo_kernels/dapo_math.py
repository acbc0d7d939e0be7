"""Elementwise DAPO math shared by every back-end.

Everything here works on per-token vectors ([N]); nothing touches the vocabulary.
With r = exp(clamp(logp - old, -B, B)) (B = log_ratio_bound, None = no clamp) and A the
advantage, the per-token objective is

    obj = min(r*A, clip(r, 1-eps_low, 1+eps_high)*A)          (decoupled clip)
    obj = max(obj, c*A)  for A < 0                             (dual clip, c > 1; None = off)
    obj = w * obj                                              (rollout correction weight)

and loss = -sum_t mask_t * obj_t / normalizer_t, with one normalizer for every token (token-mean: the
mini-batch's loss-token count) or one per token (seq-mean-token-mean: the token's sequence length times
the number of sequences).  The gradient of the loss with respect to logp_t is
g_t = -w_t (A_t r_t)/normalizer_t when the unclipped branch is the active one and the log-ratio clamp
is not, else 0.

Rollout correction (rho = exp(old - rollout), old = the detached logp on the on-policy path):
"tis" weights each token by w = min(rho, C); "mis" keeps tokens with 1/C <= rho <= C (w = 1)
and drops the others (w = 0); "none" uses w = 1.  The weights are constants (no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# codes written per token by the back-ends (int8): which clip, if any, is active
CLIP_NONE, CLIP_LOW, CLIP_HIGH, CLIP_DUAL = 0, 1, 2, 3
ROLLOUT_MODES = ("none", "tis", "mis")


@dataclass(frozen=True)
class ClipConfig:
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 3.0
    log_ratio_bound: float | None = 20.0

    def __post_init__(self):
        if not (0.0 <= self.eps_low < 1.0) or self.eps_high < 0.0:
            raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise ValueError(f"dual_clip must be > 1, got {self.dual_clip}")
        if self.log_ratio_bound is not None and not self.log_ratio_bound > 0.0:
            raise ValueError(f"log_ratio_bound must be > 0, got {self.log_ratio_bound}")


@dataclass(frozen=True)
class RolloutCorrection:
    mode: str = "none"
    cap: float = 2.0

    def __post_init__(self):
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout_correction must be one of {ROLLOUT_MODES}, got {self.mode!r}")
        if not float(self.cap) > 1.0:
            raise ValueError(f"rollout_correction_cap must be > 1, got {self.cap}")


@dataclass
class TokenTerms:
    objective: torch.Tensor  # [N] float32, mask * w * obj (0 on masked rows)
    grad_logp: torch.Tensor  # [N] float32, g_t = d loss / d logp_t (already divided by normalizer)
    clip_code: torch.Tensor  # [N] int8, CLIP_* code (CLIP_NONE on masked rows)
    is_weight: torch.Tensor  # [N] float32, rollout correction weight w_t
    is_clipped: torch.Tensor  # [N] bool, rho outside the cap (masked rows included)


def inverse_normalizer(mask: torch.Tensor, normalizer) -> torch.Tensor:
    """1/normalizer as float32 on mask's device: 0-d for one value (None -> mask.sum(), at least 1), or [N]
    for a per-token normalizer shaped like mask (0 where mask is False, so padding never divides by 0)."""
    if normalizer is None:
        denom = mask.sum().to(torch.float32).clamp_min(1.0)
    elif isinstance(normalizer, torch.Tensor):
        if normalizer.numel() == mask.numel() and normalizer.dim() > 0:
            per_token = normalizer.detach().reshape(mask.shape).to(device=mask.device, dtype=torch.float32)
            return torch.where(mask, 1.0 / torch.where(mask, per_token, 1.0), 0.0)
        if normalizer.numel() != 1:
            raise ValueError(
                f"normalizer must hold one value or one per token ({mask.numel()}), got {normalizer.numel()}"
            )
        denom = normalizer.detach().reshape(()).to(device=mask.device, dtype=torch.float32)
    else:
        if not float(normalizer) > 0:
            raise ValueError(f"normalizer must be > 0, got {normalizer}")
        denom = torch.tensor(float(normalizer), dtype=torch.float32, device=mask.device)
    return 1.0 / denom


def aggregate(objective: torch.Tensor, inv_norm: torch.Tensor) -> torch.Tensor:
    """-(sum_t objective_t / normalizer_t): the loss from the per-token terms."""
    if inv_norm.dim() == 0:
        return -(objective.sum() * inv_norm)
    return -(objective * inv_norm).sum()


def rollout_weights(old_ref, rollout_logprobs, correction: RolloutCorrection):
    """(w, outside-the-cap) per token from the old (or detached current) log-probs."""
    if correction.mode == "none":
        return torch.ones_like(old_ref), torch.zeros_like(old_ref, dtype=torch.bool)
    rho = torch.exp(old_ref - rollout_logprobs.float())
    cap = float(correction.cap)
    if correction.mode == "tis":
        return torch.clamp(rho, max=cap), rho > cap
    outside = (rho > cap) | (rho < 1.0 / cap)
    return (~outside).to(torch.float32), outside


def token_terms(
    logp,
    old_logprobs,
    advantages,
    mask,
    clip: ClipConfig,
    inv_norm,
    rollout_logprobs=None,
    correction: RolloutCorrection | None = None,
) -> TokenTerms:
    """Per-token objective, gradient coefficient, clip code and IS weight from the log-probs."""
    logp = logp.float()
    adv = advantages.float()
    correction = correction or RolloutCorrection()
    active = mask & (adv != 0)
    # old_logprobs None: on-policy (the samples' own policy), so the ratio is exactly 1
    if old_logprobs is None:
        ratio, old_ref = torch.ones_like(logp), logp.detach()
    else:
        old_ref = old_logprobs.float()
        log_ratio = logp - old_ref
        if clip.log_ratio_bound is not None:
            bound = clip.log_ratio_bound
            active = active & (log_ratio.abs() <= bound)  # clamp active: no gradient (as torch's)
            log_ratio = log_ratio.clamp(-bound, bound)
        ratio = torch.exp(log_ratio)
    lo, hi = 1.0 - clip.eps_low, 1.0 + clip.eps_high
    neg, pos = adv < 0, adv > 0
    clip_low = neg & (ratio < lo)
    clip_high = pos & (ratio > hi)
    obj = torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
    code = torch.where(clip_low, CLIP_LOW, torch.where(clip_high, CLIP_HIGH, CLIP_NONE))
    active = active & ~clip_low & ~clip_high
    if clip.dual_clip is not None:
        dual = neg & (ratio > clip.dual_clip)  # here r*A < c*A: the objective is the constant c*A
        obj = torch.where(dual, clip.dual_clip * adv, obj)
        code = torch.where(dual, CLIP_DUAL, code)
        active = active & ~dual
    weight, outside = rollout_weights(old_ref, rollout_logprobs, correction)
    if correction.mode != "none":  # skipped for "none" so that path stays bit-for-bit unchanged
        obj = obj * weight
        active = active & (weight != 0)
        adv = adv * weight
    objective = torch.where(mask, obj, 0.0)
    grad = torch.where(active, -adv * ratio, 0.0) * inv_norm
    code = torch.where(mask, code, CLIP_NONE).to(torch.int8)
    return TokenTerms(objective, grad, code, weight, outside)


def loss_stats(terms: TokenTerms, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Clip fractions of masked tokens (0-d float32), IS weights and the gradient-token share."""
    denom = mask.sum().to(torch.float32).clamp_min(1.0)
    code, grad = terms.clip_code, terms.grad_logp
    return {
        "clip_frac_low": (code == CLIP_LOW).sum().to(torch.float32) / denom,
        "clip_frac_high": (code == CLIP_HIGH).sum().to(torch.float32) / denom,
        "clip_frac_dual": (code == CLIP_DUAL).sum().to(torch.float32) / denom,
        "is_weight": terms.is_weight.detach().to(torch.float32),
        "is_clip_frac": (terms.is_clipped & mask).sum().to(torch.float32) / denom,
        "grad_token_frac": (grad != 0).sum().to(torch.float32) / max(grad.numel(), 1),
    }
