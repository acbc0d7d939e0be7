"""Output-layer transform of causal LMs: z = softcap(s * (h W^T + b)) / T.

softcap(x) = c * tanh(x / c) (Gemma-2's final logit soft-capping) when ``softcap=c`` is given,
``b`` is an optional LM-head bias and ``s`` a logit scale (Cohere multiplies by it; Granite
divides by its ``logits_scaling``, i.e. s = 1 / scaling).  Without soft-capping the scale folds
into the inverse temperature exactly, so z = z_scale * (h W^T + b).  With it,

    z = cap_out * tanh(cap_in * z0),   dz/dz0 = cap_in * cap_out * (1 - tanh^2(cap_in * z0))

with z0 = h W^T + b, cap_in = s / c and cap_out = c / T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogitHead:
    temperature: float = 1.0
    logit_scale: float = 1.0
    softcap: float | None = None

    def __post_init__(self):
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not (math.isfinite(self.logit_scale) and self.logit_scale != 0):
            raise ValueError(f"logit_scale must be finite and non-zero, got {self.logit_scale}")
        if self.softcap is not None and not float(self.softcap) > 0:
            raise ValueError(f"softcap must be > 0, got {self.softcap}")

    @property
    def z_scale(self) -> float:
        """dz/dz0 without soft-capping."""
        return self.logit_scale / self.temperature

    @property
    def cap_in(self) -> float:
        return self.logit_scale / self.softcap if self.softcap is not None else 0.0

    @property
    def cap_out(self) -> float:
        return self.softcap / self.temperature if self.softcap is not None else 0.0

    def apply_(self, z: torch.Tensor, bias=None, deriv: torch.Tensor | None = None) -> torch.Tensor:
        """Turn raw logits ``z`` (float32) into final logits in place; fill ``deriv`` with dz/dz0.

        ``deriv`` is only written when soft-capping (otherwise dz/dz0 is the scalar z_scale).
        """
        if bias is not None:
            z.add_(bias.to(z.dtype))
        if self.softcap is None:
            if self.z_scale != 1.0:
                z.mul_(self.z_scale)
            return z
        z.mul_(self.cap_in).tanh_()
        if deriv is not None:
            torch.mul(z, z, out=deriv)
            deriv.neg_().add_(1.0).mul_(self.cap_in * self.cap_out)
        return z.mul_(self.cap_out)
