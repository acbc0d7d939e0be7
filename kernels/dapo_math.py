"""Elementwise DAPO math shared by every back-end.

Everything here works on per-token vectors ([N]); nothing touches the vocabulary.
With r = exp(logp - old) and A the advantage, the per-token objective is

    obj = min(r*A, clip(r, 1-eps_low, 1+eps_high)*A)          (decoupled clip)
    obj = max(obj, c*A)  for A < 0                             (optional dual clip, c > 1)

and loss = -(1/normalizer) * sum_t mask_t * obj_t.  The gradient of the loss with respect to
logp_t is g_t = -(A_t r_t)/normalizer when the unclipped branch is the active one, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# codes written per token by the back-ends (int8): which clip, if any, is active
CLIP_NONE, CLIP_LOW, CLIP_HIGH, CLIP_DUAL = 0, 1, 2, 3


@dataclass(frozen=True)
class ClipConfig:
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = None

    def __post_init__(self):
        if not (0.0 <= self.eps_low < 1.0) or self.eps_high < 0.0:
            raise ValueError("need 0 <= eps_low < 1 and eps_high >= 0, "
                             f"got {self.eps_low}, {self.eps_high}")
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise ValueError(f"dual_clip must be > 1, got {self.dual_clip}")


@dataclass
class TokenTerms:
    objective: torch.Tensor  # [N] float32, mask * obj (0 on masked rows)
    grad_logp: torch.Tensor  # [N] float32, g_t = d loss / d logp_t (already divided by normalizer)
    clip_code: torch.Tensor  # [N] int8, CLIP_* code (CLIP_NONE on masked rows)


def inverse_normalizer(mask: torch.Tensor, normalizer) -> torch.Tensor:
    """0-d float32 tensor 1/normalizer on mask's device (None -> mask.sum(), at least 1)."""
    if normalizer is None:
        denom = mask.sum().to(torch.float32).clamp_min(1.0)
    elif isinstance(normalizer, torch.Tensor):
        if normalizer.numel() != 1:
            raise ValueError("normalizer tensor must hold a single value")
        denom = normalizer.detach().reshape(()).to(device=mask.device, dtype=torch.float32)
    else:
        if not float(normalizer) > 0:
            raise ValueError(f"normalizer must be > 0, got {normalizer}")
        denom = torch.tensor(float(normalizer), dtype=torch.float32, device=mask.device)
    return 1.0 / denom


def token_terms(logp, old_logprobs, advantages, mask, clip: ClipConfig, inv_norm) -> TokenTerms:
    """Per-token objective, gradient coefficient and clip code from the log-probs (all [N])."""
    logp = logp.float()
    adv = advantages.float()
    # old_logprobs None: on-policy (the samples' own policy), so the ratio is exactly 1
    ratio = torch.ones_like(logp) if old_logprobs is None else torch.exp(logp - old_logprobs.float())
    lo, hi = 1.0 - clip.eps_low, 1.0 + clip.eps_high
    neg, pos = adv < 0, adv > 0
    clip_low = neg & (ratio < lo)
    clip_high = pos & (ratio > hi)
    obj = torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
    code = torch.where(clip_low, CLIP_LOW, torch.where(clip_high, CLIP_HIGH, CLIP_NONE))
    active = mask & (pos | neg) & ~clip_low & ~clip_high
    if clip.dual_clip is not None:
        dual = neg & (ratio > clip.dual_clip)  # here r*A < c*A: the objective is the constant c*A
        obj = torch.where(dual, clip.dual_clip * adv, obj)
        code = torch.where(dual, CLIP_DUAL, code)
        active = active & ~dual
    objective = torch.where(mask, obj, 0.0)
    grad = torch.where(active, -adv * ratio, 0.0) * inv_norm
    code = torch.where(mask, code, CLIP_NONE).to(torch.int8)
    return TokenTerms(objective, grad, code)


def clip_fractions(clip_code: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fractions of masked tokens whose low / high / dual clip is active (0-d float32)."""
    denom = mask.sum().to(torch.float32).clamp_min(1.0)
    return {
        "clip_frac_low": (clip_code == CLIP_LOW).sum().to(torch.float32) / denom,
        "clip_frac_high": (clip_code == CLIP_HIGH).sum().to(torch.float32) / denom,
        "clip_frac_dual": (clip_code == CLIP_DUAL).sum().to(torch.float32) / denom,
    }
