"""Per-sequence attention for packed rows on back-ends without flash-attention: ``packed_sdpa``.

One name runs from the config (``model.attn_implementation: packed_sdpa``) through the transformers
registration to the packer's layout choice. Packed rows (``cu_seq_lens_q`` or shared-prompt bundles,
no mask) run PyTorch's causal SDPA on each sequence separately: neither a ``T x T`` mask nor attention
FLOPs on masked-out blocks (``sum L_i^2`` instead of ``T^2``). Everything else (batched generation)
gets transformers' plain SDPA.

Use::

    name = register_attention(PACKED_SDPA)   # once per process, idempotent
    model.set_attn_implementation(name)      # or attn_implementation=name when loading
    mbs = make_micro_batches(seqs, max_tokens, attn_impl=name)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PACKED_SDPA", "ATTENTION", "register_attention", "per_sequence_sdpa", "cu_seqlens_from_position_ids"]

PACKED_SDPA = "packed_sdpa"


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """``[1, T]`` position ids restarting at 0 for every sequence -> ``[S+1]`` int32 boundaries."""
    pos = position_ids.reshape(-1)
    starts = (pos == 0).nonzero().reshape(-1)
    if starts.numel() == 0 or starts[0] != 0:
        starts = torch.cat([starts.new_zeros(1), starts])
    end = torch.tensor([pos.numel()], device=pos.device, dtype=starts.dtype)
    return torch.cat([starts, end]).to(torch.int32)


def per_sequence_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,  # [1, heads, T, D]
    key: torch.Tensor,  # [1, kv_heads, T, D]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    shared_prompt_bundles: list | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention over packed sequences, one causal SDPA call per sequence (or per prompt and response
    of a shared-prompt bundle). Returns ``[1, T, heads, D]``."""
    if query.shape[0] != 1:
        raise ValueError(f"{PACKED_SDPA} expects one packed row (batch 1), got batch {query.shape[0]}")
    if attention_mask is not None:
        raise ValueError(f"{PACKED_SDPA} does not take an attention mask; pass cu_seq_lens_q / position_ids")
    if shared_prompt_bundles is not None:
        from fastdapo.packing.shared_attention import shared_prompt_attention

        out = shared_prompt_attention(
            query, key, value, shared_prompt_bundles, dropout, scaling, sliding_window=sliding_window
        )
        return out.transpose(1, 2).contiguous(), None
    if cu_seq_lens_k is not None and cu_seq_lens_q is not None and not torch.equal(cu_seq_lens_q, cu_seq_lens_k):
        raise ValueError(f"{PACKED_SDPA} supports self-attention only (cu_seq_lens_q == cu_seq_lens_k)")
    t = query.shape[2]
    if cu_seq_lens_q is None:
        cu_seq_lens_q = cu_seqlens_from_position_ids(position_ids) if position_ids is not None else None
    bounds = cu_seq_lens_q.tolist() if cu_seq_lens_q is not None else [0, t]
    if bounds[-1] != t:
        raise ValueError(f"cu_seq_lens_q ends at {bounds[-1]} but the row holds {t} tokens")
    if sliding_window is not None and max(b - a for a, b in zip(bounds[:-1], bounds[1:])) > sliding_window:
        raise NotImplementedError(f"{PACKED_SDPA} does not implement sliding-window attention")

    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    # split(), not slicing: the backward of a slice materializes a full-row gradient per sequence
    sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    outs = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
        for q, k, v in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2))
    ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _packed_or_sdpa_mask(batch_size: int, *args, **kwargs):
    """Packed rows arrive without a padding mask: their attention is cut per sequence from
    cu_seq_lens, so no [T, T] mask is built. Everything else (generation) gets the SDPA mask."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None and batch_size == 1 and kwargs.get("q_offset", 0) == 0:
        return None
    return sdpa_mask(batch_size, *args, **kwargs)


def _packed_or_sdpa(module, query, key, value, attention_mask, **kwargs):
    packed = kwargs.get("cu_seq_lens_q") is not None or kwargs.get("shared_prompt_bundles") is not None
    if packed and attention_mask is None:
        return per_sequence_sdpa(module, query, key, value, None, **kwargs)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


# name -> (attention forward, mask function) as transformers registers them
ATTENTION = {PACKED_SDPA: (_packed_or_sdpa, _packed_or_sdpa_mask)}


def register_attention(name: str = PACKED_SDPA) -> str:
    """Register one of :data:`ATTENTION` with transformers (idempotent); returns the name to load the
    model with, which is also the packer's ``attn_impl``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    forward, mask = ATTENTION[name]
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, mask)
    return name
