"""One rank's part of a packed micro-batch under sequence parallelism.

The whole row is laid out first (position ids restarting per sequence, next-token targets, the row's
cut points), then rank ``r`` of ``S`` keeps row positions ``[r*T/S, (r+1)*T/S)`` and the scored slots
predicted from them. So every slot is scored on exactly one rank, with the target, mask, advantage and
log-probs it has in the whole row; attention sees the whole row through the Ulysses all-to-all, given
the whole row's cut points (``cu_seq_lens`` or shared-prompt bundles).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdapo.packing.layouts import VARLEN_IMPLS, MicroBatch, PackedBatch, SharedPromptBatch

__all__ = ["SequenceShard", "shard_micro_batch", "predicting_positions"]

_PER_SLOT = ("targets", "loss_mask", "advantages", "old_logprobs", "rollout_logprobs", "loss_normalizer")


def predicting_positions(mb: MicroBatch) -> torch.Tensor:
    """Row position that predicts each scored slot of ``mb``."""
    if isinstance(mb, SharedPromptBatch):
        return mb.pred_index
    if isinstance(mb, PackedBatch):
        return torch.arange(mb.input_ids.shape[1], device=mb.input_ids.device)
    raise ValueError(f"sequence parallelism splits packed rows; {type(mb).__name__} is not one")


@dataclass(kw_only=True)
class SequenceShard(MicroBatch):
    """``input_ids``/``position_ids``: this rank's ``[1, T/S]``; per-slot fields: its slots only."""

    full: MicroBatch  # the whole micro-batch (slot order, sequence map)
    slots: torch.Tensor  # [n] int64: this rank's slots, as indices into the whole micro-batch's slots
    local_pred: torch.Tensor  # [max(n, 1)] int64: the row position predicting each, relative to this shard
    ulysses: object = None  # the attention the backbone routes through (actor.ulysses)

    def to(self, device: torch.device) -> SequenceShard:
        super().to(device)
        self.full.to(device)
        self.slots, self.local_pred = self.slots.to(device), self.local_pred.to(device)
        return self

    def backbone_kwargs(self, mask_dtype: torch.dtype = torch.float32) -> dict:
        kw = self.full.backbone_kwargs(mask_dtype)  # the whole row's cut points
        kw.update(input_ids=self.input_ids, position_ids=self.position_ids, sequence_parallel=self.ulysses)
        return kw

    def scored_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.index_select(0, self.local_pred)

    def whole(self, values: torch.Tensor, sum_over_group) -> torch.Tensor:
        """This rank's per-slot ``values`` -> the whole micro-batch's ``[N, ...]`` (``sum_over_group`` adds the
        group's ranks' tensors; each slot is non-zero on one rank only, so the sum is exact)."""
        out = values.new_zeros((self.full.targets.shape[0], *values.shape[1:]))
        out[self.slots] = values[: self.slots.numel()]  # (a shard without slots scored one masked dummy)
        return sum_over_group(out)

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        return self.full.unpack(values)  # values of the whole micro-batch (see whole())


def shard_micro_batch(mb: MicroBatch, rank: int, size: int, ulysses=None) -> SequenceShard:
    if mb.attn_impl not in VARLEN_IMPLS:
        raise ValueError(
            f"sequence parallelism needs an attention that takes the row's cut points ({VARLEN_IMPLS}), "
            f"got {mb.attn_impl!r}"
        )
    t = mb.input_ids.shape[1]
    if t % size:
        raise ValueError(f"a row of {t} tokens does not split into {size} equal shards; pack with pad_to_multiple_of")
    lo, hi = rank * t // size, (rank + 1) * t // size
    pred = predicting_positions(mb)
    slots = ((pred >= lo) & (pred < hi)).nonzero().reshape(-1)
    fields = {k: (v.index_select(0, slots) if (v := getattr(mb, k)) is not None else None) for k in _PER_SLOT}
    local_pred = pred.index_select(0, slots) - lo
    if slots.numel() == 0:
        # a shard that predicts nothing (all prompt, e.g.) still scores one masked slot: every rank's loss must
        # reach its hidden states, or its backward would skip the all-to-alls its group waits on
        fields = {k: (v.new_zeros(1) if v is not None else None) for k, v in fields.items()}
        local_pred = pred.new_zeros(1)
    real = max(0, min(hi, mb.num_tokens) - lo)  # real tokens sit at the front of a packed row
    return SequenceShard(
        input_ids=mb.input_ids[:, lo:hi],
        position_ids=mb.position_ids[:, lo:hi],
        cu_seqlens=mb.cu_seqlens,
        seq_index=mb.seq_index,
        num_tokens=real,
        attn_impl=mb.attn_impl,
        full=mb,
        slots=slots,
        local_pred=local_pred,
        ulysses=ulysses,
        **fields,
    )
