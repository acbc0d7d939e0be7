"""The transform a causal LM applies between its last hidden state and its logits, read from its
config and its output layer, so the fused kernels can reproduce it: z = softcap(s * (h W^T + b)).

Known transforms: an LM-head bias (Phi), a constant logit multiplier (Cohere's ``logit_scale``) or
divisor (Granite's ``logits_scaling``) and final-logit soft-capping (Gemma-2's
``final_logit_softcapping``). A transform that is neither declared in the config nor visible in the
output layer cannot be seen here; the fidelity probe (``fastdapo.actor.probe``) catches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OutputHead", "UnsupportedModelError", "detect_output_head"]


class UnsupportedModelError(ValueError):
    """A model the trainer cannot train exactly; the message is one line naming the model class,
    what is unsupported and what to do."""


@dataclass(frozen=True)
class OutputHead:
    logit_scale: float = 1.0  # multiplies the logits (1 / divisor for a divisor)
    softcap: float | None = None  # c in c * tanh(z / c)
    has_bias: bool = False

    def kernel_kwargs(self, lm_head: nn.Module) -> dict:
        """Keyword arguments for ``fused_linear_dapo_loss`` / ``linear_logprobs``."""
        return {
            "bias": lm_head.bias if self.has_bias else None,
            "logit_scale": self.logit_scale,
            "softcap": self.softcap,
        }

    def describe(self) -> str:
        parts = ["bias"] if self.has_bias else []
        if self.logit_scale != 1.0:
            parts.append(f"logit scale {self.logit_scale:g}")
        if self.softcap is not None:
            parts.append(f"soft-cap {self.softcap:g}")
        return ", ".join(parts) or "plain linear"


def _positive(cls: str, key: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise UnsupportedModelError(
            f"{cls}: config.{key}={value!r} is not a positive number; fix the model's config.json"
        )
    return v


def detect_output_head(model: nn.Module) -> OutputHead:
    """The output transform of a transformers causal LM; refuses an output layer it cannot reproduce."""
    cls = type(model).__name__
    head = model.get_output_embeddings()
    # A subclass of nn.Linear may override forward (a LoRA wrapper, a quantized layer): its output is not h W^T + b.
    if not isinstance(head, nn.Linear) or type(head).forward is not nn.Linear.forward:
        raise UnsupportedModelError(
            f"{cls}: the output layer is {type(head).__name__}, not a plain torch.nn.Linear; the fused LM-head "
            "kernels need its weight [vocab, hidden] (merge adapters / dequantize the head before training)"
        )
    config = model.config
    scale = 1.0
    if getattr(config, "logit_scale", None) is not None:  # Cohere: logits * logit_scale
        scale *= _positive(cls, "logit_scale", config.logit_scale)
    if getattr(config, "logits_scaling", None) is not None:  # Granite: logits / logits_scaling
        scale /= _positive(cls, "logits_scaling", config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    if softcap is not None:
        softcap = _positive(cls, "final_logit_softcapping", softcap)
    bias = head.bias
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise UnsupportedModelError(f"{cls}: the output layer's bias is not a tensor")
    return OutputHead(logit_scale=scale, softcap=softcap, has_bias=bias is not None)
