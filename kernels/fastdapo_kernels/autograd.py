"""torch.autograd.Function tying a back-end's forward and backward together."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .dapo_math import ClipConfig, RolloutCorrection, TokenTerms, aggregate, loss_stats, token_terms
from .logit_head import LogitHead


@dataclass(frozen=True)
class LossInputs:
    """Per-token loss inputs ([N] each) and the elementwise loss configuration."""

    old_logprobs: torch.Tensor | None
    advantages: torch.Tensor
    mask: torch.Tensor
    clip: ClipConfig
    inv_norm: torch.Tensor  # 0-d, or [N] for a per-token normalizer
    rollout_logprobs: torch.Tensor | None = None
    correction: RolloutCorrection = RolloutCorrection()

    def rows(self, sl: slice) -> LossInputs:
        pick = lambda x: None if x is None else x[sl]
        return replace(
            self,
            old_logprobs=pick(self.old_logprobs),
            advantages=self.advantages[sl],
            mask=self.mask[sl],
            rollout_logprobs=pick(self.rollout_logprobs),
            inv_norm=self.inv_norm if self.inv_norm.dim() == 0 else self.inv_norm[sl],
        )

    def terms(self, logp: torch.Tensor) -> TokenTerms:
        return token_terms(
            logp,
            self.old_logprobs,
            self.advantages,
            self.mask,
            self.clip,
            self.inv_norm,
            self.rollout_logprobs,
            self.correction,
        )


class FusedLinearDapo(torch.autograd.Function):
    """loss = -sum mask * w * min(r A, clip(r) A) / normalizer with logp from the LM head.

    Outputs (loss, logprobs, entropy, clip_code, grad_logp, is_weight, is_clipped); only ``loss``
    is differentiable (with respect to hidden, weight and bias).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inputs: LossInputs, head: LogitHead, backend):
        need = {
            "dh": ctx.needs_input_grad[0],
            "dw": ctx.needs_input_grad[1],
            "db": bias is not None and ctx.needs_input_grad[2],
        }
        terms, logp, entropy, saved = backend.loss_forward(hidden, weight, bias, targets, inputs, head, need)
        loss = aggregate(terms.objective, inputs.inv_norm)
        ctx.backend = backend
        ctx.meta = {
            "head": head,
            "need": need,
            "weight_dtype": weight.dtype,
            "hidden_dtype": hidden.dtype,
            "bias_dtype": None if bias is None else bias.dtype,
        }
        ctx.save_for_backward(*saved)
        outs = (logp, entropy, terms.clip_code, terms.grad_logp, terms.is_weight, terms.is_clipped)
        ctx.mark_non_differentiable(*outs)
        return (loss,) + outs

    @staticmethod
    def backward(ctx, grad_loss, *_unused):
        dh, dw, db = ctx.backend.loss_backward(ctx.saved_tensors, grad_loss, ctx.meta)
        return dh, dw, db, None, None, None, None


def dapo_loss(backend, hidden, weight, bias, targets, inputs: LossInputs, head: LogitHead):
    """Run the loss through autograd when a gradient is needed, directly otherwise."""
    params = [x for x in (hidden, weight, bias) if x is not None]
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        loss, logp, entropy, code, grad, w, out = FusedLinearDapo.apply(
            hidden, weight, bias, targets, inputs, head, backend
        )
        terms = TokenTerms(torch.empty(0), grad, code, w, out)
    else:
        none = {"dh": False, "dw": False, "db": False}
        terms, logp, entropy, _ = backend.loss_forward(hidden, weight, bias, targets, inputs, head, none)
        loss = aggregate(terms.objective, inputs.inv_norm)
    stats = {"logprobs": logp, "entropy": entropy}
    stats.update(loss_stats(terms, inputs.mask))
    return loss, stats
