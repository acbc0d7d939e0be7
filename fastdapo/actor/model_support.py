"""What the training path can and cannot reproduce exactly, decided once when the model is loaded.

The packed and shared-prompt attention paths (``packed_sdpa``, and the 4-D block mask of ``sdpa`` /
``eager``) compute full causal attention within each sequence. So:

- sliding-window attention is exact to ignore when no sequence is longer than the window (every key
  is inside it); otherwise only flash-attention's varlen kernel, which applies the window itself, is exact;
- attention-logit soft-capping (Gemma-2) is applied only by the model's own ``eager`` attention and
  by flash-attention; PyTorch's SDPA has no soft-capping.

Anything else is refused here with one line, never approximated.
"""

from __future__ import annotations

from torch import nn

from fastdapo.actor.output_head import OutputHead, UnsupportedModelError, detect_output_head

__all__ = ["sliding_layers", "check_model_support", "choose_attention", "model_class"]

_FLASH = ("flash_attention_2", "flash_attention_3")


def sliding_layers(config) -> tuple[int | None, int, int]:
    """(window, layers using it, layers): window None when no layer slides."""
    window = getattr(config, "sliding_window", None)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    types = getattr(config, "layer_types", None)
    if types:
        n = sum(t != "full_attention" for t in types)
    elif getattr(config, "use_sliding_window", True) is False:
        n = 0
    else:  # Mistral-style: one window for every layer
        n = layers
    if not window or n == 0:
        return None, 0, layers
    return int(window), n, layers


def model_class(config) -> str:
    return (getattr(config, "architectures", None) or [type(config).__name__])[0]


def choose_attention(config, requested: str, resolved: str, name: str | None = None) -> str:
    """The attention to load the model with, decided from its config before loading: a model with
    attention-logit soft-capping (Gemma-2) runs its own eager attention, exact with the packer's block
    mask, when the choice was ``auto``; an explicit SDPA choice is refused (SDPA cannot soft-cap)."""
    cap = getattr(config, "attn_logit_softcapping", None)
    if cap is None or resolved in _FLASH or resolved == "eager":
        return resolved
    if requested == "auto":
        return "eager"
    raise UnsupportedModelError(
        f"{name or model_class(config)}: attention-logit soft-capping (attn_logit_softcapping={cap}) is not supported "
        f"by {resolved}; use model.attn_implementation=eager (or auto) or flash_attention_2"
    )


def check_model_support(model: nn.Module, attn_impl: str, max_len: int) -> OutputHead:
    """The model's output head, after refusing what the training path would compute inexactly.

    ``attn_impl``: the attention the packer uses; ``max_len``: the longest sequence (prompt + response)."""
    cls = type(model).__name__
    head = detect_output_head(model)
    config = model.config
    if attn_impl in _FLASH:
        return head  # the varlen kernel applies sliding windows and soft-capping itself
    window, n, layers = sliding_layers(config)
    if window is not None and max_len > window:
        types = [t for t in (getattr(config, "layer_types", None) or []) if t != "full_attention"]
        kind = types[0] if types else "sliding_attention"
        raise UnsupportedModelError(
            f"{cls}: {kind} (window {window} on {n} of {layers} layers) is not supported by the {attn_impl} "
            f"packed training path for sequences up to {max_len} tokens; keep data.max_prompt_length + "
            f"rollout.max_response_length <= {window} or use model.attn_implementation=flash_attention_2"
        )
    choose_attention(config, attn_impl, attn_impl, cls)  # refuses soft-capped attention on SDPA
    return head
