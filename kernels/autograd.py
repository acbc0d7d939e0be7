"""torch.autograd.Function tying a back-end's forward and backward together."""

from __future__ import annotations

import torch

from .dapo_math import ClipConfig, clip_fractions


class FusedLinearDapo(torch.autograd.Function):
    """loss = -(1/normalizer) sum mask * min(r A, clip(r) A) with logp from hidden @ weight.T / T.

    Outputs (loss, logprobs, entropy, clip_code, grad_logp); only ``loss`` is differentiable.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, old_logprobs, advantages, mask, clip: ClipConfig,
                inv_norm, temperature, backend):
        need_dh, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        terms, logp, entropy, saved = backend.loss_forward(
            hidden, weight, targets, old_logprobs, advantages, mask, clip, inv_norm,
            temperature=temperature, need_dh=need_dh, need_dw=need_dw)
        loss = -(terms.objective.sum() * inv_norm)
        ctx.backend = backend
        ctx.meta = {"temperature": temperature, "need_dh": need_dh, "need_dw": need_dw,
                    "weight_dtype": weight.dtype, "hidden_dtype": hidden.dtype}
        ctx.save_for_backward(*saved)
        outs = (logp, entropy, terms.clip_code, terms.grad_logp)
        ctx.mark_non_differentiable(*outs)
        return (loss,) + outs

    @staticmethod
    def backward(ctx, grad_loss, *_unused):
        dh, dw = ctx.backend.loss_backward(ctx.saved_tensors, grad_loss, ctx.meta)
        return dh, dw, None, None, None, None, None, None, None, None


def dapo_loss(backend, hidden, weight, targets, old_logprobs, advantages, mask, clip: ClipConfig,
              inv_norm, temperature):
    """Run the loss through autograd when a gradient is needed, directly otherwise."""
    wants_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if wants_grad:
        loss, logp, entropy, code, grad = FusedLinearDapo.apply(
            hidden, weight, targets, old_logprobs, advantages, mask, clip, inv_norm, temperature,
            backend)
    else:
        terms, logp, entropy, _ = backend.loss_forward(
            hidden, weight, targets, old_logprobs, advantages, mask, clip, inv_norm,
            temperature=temperature, need_dh=False, need_dw=False)
        loss = -(terms.objective.sum() * inv_norm)
        code, grad = terms.clip_code, terms.grad_logp
    stats = {"logprobs": logp, "entropy": entropy}
    stats.update(clip_fractions(code, mask))
    stats["grad_token_frac"] = (grad != 0).sum().to(torch.float32) / max(grad.numel(), 1)
    return loss, stats
