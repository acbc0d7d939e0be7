"""Rollout vs trainer mismatch on the loss tokens: the ``rollout_corr/*`` step metrics.

With rho_t = exp(logp_trainer_t - logp_rollout_t) (the trainer's log-prob as the loss uses it: the
old-log-prob pass, or on-policy the update pass itself), a matching engine gives rho = 1 everywhere:

* ``logp_abs_diff_mean`` / ``logp_abs_diff_max``: mean and max of |log rho| over the step's loss tokens.
* ``kl``: the k3 estimator of KL(rollout || trainer), mean(rho - 1 - log rho) over tokens drawn by the
  engine; unbiased and never negative.
* ``ppl_ratio``: trainer perplexity / rollout perplexity = exp(mean(-logp_trainer)) / exp(mean(-logp_rollout))
  over all loss tokens of the step; > 1 when the trainer finds the samples less likely than the engine did.
* ``clip_frac``: fraction of tokens outside the correction's cap C (rho > C, or for ``mis`` rho outside
  [1/C, C]); with the correction off it is computed with the configured C, to see its effect in advance.
* ``is_weight_mean``: mean correction weight the loss applied (1 with the correction off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdapo.runtime import distributed as D

_BOUND = 20.0  # |log rho| is clamped before exp, as the loss does, so one wild token cannot overflow the KL


@dataclass
class MismatchStats:
    mode: str = "none"
    cap: float = 2.0
    # token sums (device tensors once a micro-batch was added), reduced over ranks in summary()
    abs_diff: torch.Tensor | float = 0.0
    abs_max: torch.Tensor | float = 0.0
    k3: torch.Tensor | float = 0.0
    nll_trainer: torch.Tensor | float = 0.0
    nll_rollout: torch.Tensor | float = 0.0
    outside: torch.Tensor | float = 0.0
    weight: torch.Tensor | float = 0.0
    tokens: torch.Tensor | float = 0.0

    def add(
        self,
        trainer_lp: torch.Tensor,
        rollout_lp: torch.Tensor,
        mask: torch.Tensor,
        is_weight: torch.Tensor | None = None,
    ) -> None:
        m = mask.reshape(-1).bool()
        t = trainer_lp.detach().reshape(-1)[m].float()
        r = rollout_lp.detach().reshape(-1)[m].float().to(t.device)
        log_rho = (t - r).clamp(-_BOUND, _BOUND)
        a = log_rho.abs()
        log_cap = math.log(self.cap)
        out = (a > log_cap) if self.mode == "mis" else (log_rho > log_cap)
        self.abs_diff = self.abs_diff + a.sum()
        if a.numel():
            self.abs_max = torch.maximum(torch.as_tensor(self.abs_max, device=a.device), a.max())
        self.k3 = self.k3 + (log_rho.exp() - 1 - log_rho).sum()
        self.nll_trainer = self.nll_trainer - t.sum()
        self.nll_rollout = self.nll_rollout - r.sum()
        self.outside = self.outside + out.sum()
        w = is_weight.detach().reshape(-1)[m].float().sum() if is_weight is not None else m.sum()
        self.weight = self.weight + w
        self.tokens = self.tokens + m.sum()

    def summary(self) -> dict:
        """The metrics over every rank's tokens; empty when no engine log-probs were seen (a collective:
        every rank calls it)."""
        abs_diff, k3, nll_t, nll_r, outside, weight, tokens = D.all_reduce(
            [
                float(x)
                for x in (
                    self.abs_diff,
                    self.k3,
                    self.nll_trainer,
                    self.nll_rollout,
                    self.outside,
                    self.weight,
                    self.tokens,
                )
            ]
        )
        abs_max = D.all_reduce([float(self.abs_max)], "max")[0]
        if not tokens:
            return {}
        log_ppl_ratio = min((nll_t - nll_r) / tokens, 700.0)
        return {
            "rollout_corr/logp_abs_diff_mean": abs_diff / tokens,
            "rollout_corr/logp_abs_diff_max": abs_max,
            "rollout_corr/kl": k3 / tokens,
            "rollout_corr/ppl_ratio": math.exp(log_ppl_ratio),
            "rollout_corr/clip_frac": outside / tokens,
            "rollout_corr/is_weight_mean": weight / tokens,
        }
