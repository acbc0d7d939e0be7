"""Ulysses attention for sequence-parallel training passes, through DeepSpeed's ``UlyssesSPAttentionHF``.

Each rank holds 1/S of a packed row. Before attention DeepSpeed's all-to-all trades sequence shards for
head shards (every rank then sees the whole row for 1/S of the heads), the model's own attention
(``packed_sdpa`` or flash-attention, with the cut points of the whole row) runs, and a second all-to-all
trades back. Everything else in a decoder layer works token by token, so the result is that of the
unsplit row.

Only passes that ask for it take this path: a sharded micro-batch passes ``sequence_parallel=<the
attention>`` among the backbone's keyword arguments. Generation, which each rank runs on its own
prompts, calls the same attention function without it and is unchanged. (DeepSpeed's
``register_with_transformers`` would reroute every call instead.)
"""

from __future__ import annotations

ROUTED = "_fastdapo_sequence_parallel_route"
ULYSSES_ATTN_IMPLS = ("packed_sdpa", "flash_attention_2", "flash_attention_3")


def _route(core):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        ulysses = kwargs.pop("sequence_parallel", None)
        if ulysses is None:
            return core(module, query, key, value, attention_mask, *args, **kwargs)
        # the row's cut points travel in kwargs (cu_seq_lens / shared-prompt bundles): no mask is needed
        return ulysses(module, query, key, value, None, *args, **kwargs)

    setattr(attention, ROUTED, core)
    return attention


def ulysses_attention(model, attn_impl: str, group):
    """DeepSpeed's Ulysses attention around ``attn_impl`` for ``model``'s shape, and the routing that sends
    sequence-parallel passes through it (installed once per process, idempotent)."""
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if attn_impl not in ULYSSES_ATTN_IMPLS:
        raise ValueError(f"Ulysses sequence parallelism wraps {ULYSSES_ATTN_IMPLS}, not {attn_impl!r}")
    current = ALL_ATTENTION_FUNCTIONS[attn_impl]
    core = getattr(current, ROUTED, current)
    if not hasattr(current, ROUTED):
        ALL_ATTENTION_FUNCTIONS[attn_impl] = _route(core)
    text = model.config.get_text_config()
    heads = text.num_attention_heads
    return UlyssesSPAttentionHF(
        attn=core,
        batch_size=1,  # one packed row per micro-batch
        attn_head_count=heads,
        attn_head_size=getattr(text, "head_dim", None) or text.hidden_size // heads,
        kv_head_count=getattr(text, "num_key_value_heads", None) or heads,
        num_hidden_layers=text.num_hidden_layers,
        process_group=group,
        seq_length_is_variable=True,  # every micro-batch has its own length (a multiple of S)
    )
