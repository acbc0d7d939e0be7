"""The trainable policy as DeepSpeed sees it: backbone -> last hidden states -> fused LM-head loss.

The model is never asked for full-vocabulary logits: the LM-head weight goes straight into the
fused kernel together with the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastdapo.actor.output_head import detect_output_head
from fastdapo.config.schema import Config
from fastdapo.packing.layouts import MicroBatch
from fastdapo_kernels import fused_linear_dapo_loss, linear_logprobs


def resolved_correction(cfg: Config) -> str:
    """``algorithm.rollout_correction`` with ``auto`` decided: asynchronous rollouts are off-policy by up to
    ``rollout.max_staleness`` updates, so their behaviour policy (the engine's log-probs) is corrected for."""
    mode = cfg.algorithm.rollout_correction
    if mode == "auto":
        return "tis" if cfg.rollout.max_staleness >= 1 else "none"
    return mode


@dataclass
class LossSettings:
    """The loss's knobs, passed as they are to the fused kernel (validated by the config loader and the
    kernel's ClipConfig, not here)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = None
    temperature: float = 1.0
    impl: str = "auto"
    log_ratio_bound: float | None = 20.0
    rollout_correction: str = "none"
    rollout_correction_cap: float = 2.0
    loss_agg_mode: str = "token-mean"

    @classmethod
    def from_config(cls, cfg: Config) -> LossSettings:
        a = cfg.algorithm
        # the rollout temperature: the loss scores the samples under the distribution that drew them
        return cls(
            a.eps_low,
            a.eps_high,
            a.dual_clip,
            cfg.rollout.temperature,
            a.kernel_impl,
            a.log_ratio_bound,
            resolved_correction(cfg),
            a.rollout_correction_cap,
            a.loss_agg_mode,
        )


class PolicyWithLoss(nn.Module):
    def __init__(self, causal_lm: nn.Module, settings: LossSettings):
        super().__init__()
        self.model = causal_lm
        self.settings = settings
        self.backbone = getattr(causal_lm, causal_lm.base_model_prefix)
        self.lm_head = causal_lm.get_output_embeddings()
        self.head = detect_output_head(causal_lm)  # bias / logit scale / soft-cap, reproduced by the kernels
        try:  # ZeRO-3 must fetch the LM head for this module's forward, which never calls lm_head()
            import deepspeed

            deepspeed.zero.register_external_parameter(self, self.lm_head.weight)
            if self.lm_head.bias is not None:
                deepspeed.zero.register_external_parameter(self, self.lm_head.bias)
        except Exception:
            pass

    def hidden(self, mb: MicroBatch) -> torch.Tensor:
        h = self.backbone(**mb.backbone_kwargs(mask_dtype=self.lm_head.weight.dtype)).last_hidden_state
        return mb.scored_hidden(h.reshape(-1, h.shape[-1]))

    def forward(self, mb: MicroBatch, normalizer: torch.Tensor | None = None, score_only: bool = False):
        s = self.settings
        h = self.hidden(mb)
        w = self.lm_head.weight
        if score_only:
            return linear_logprobs(
                h, w, mb.targets, temperature=s.temperature, impl=s.impl, **self.head.kernel_kwargs(self.lm_head)
            )
        # No old log-probs: on-policy (one update per rollout step), or a padding micro-batch of a
        # rank with fewer sequences than its peers (all masked, so the ratio does not matter).
        adv = mb.advantages
        if adv is None:
            adv = torch.zeros(mb.targets.shape, dtype=torch.float32, device=h.device)
        return fused_linear_dapo_loss(
            h,
            w,
            mb.targets,
            mb.old_logprobs,
            adv,
            mb.loss_mask,
            eps_low=s.eps_low,
            eps_high=s.eps_high,
            temperature=s.temperature,
            normalizer=normalizer if mb.loss_normalizer is None else mb.loss_normalizer,
            impl=s.impl,
            dual_clip=s.dual_clip,
            log_ratio_bound=s.log_ratio_bound,
            rollout_logprobs=mb.rollout_logprobs,
            rollout_correction=self._correction(mb),
            rollout_correction_cap=s.rollout_correction_cap,
            **self.head.kernel_kwargs(self.lm_head),
        )

    def _correction(self, mb: MicroBatch) -> str:
        mode = self.settings.rollout_correction
        if mode != "none" and mb.rollout_logprobs is None:
            if bool(mb.loss_mask.any()):
                raise ValueError(
                    f"algorithm.rollout_correction={mode} needs the rollout engine's log-probs, "
                    "and this engine recorded none"
                )
            return "none"  # an all-padding micro-batch: nothing to weight
        return mode
