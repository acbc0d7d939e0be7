"""Micro-batch layouts: one type per packing form, each knowing how the backbone reads it and how its
per-token outputs map back to the sequences.

* :class:`PackedBatch`: one row ``[1, T]``, sequences back to back, position ids restarting at 0.
* :class:`PaddedBatch`: the baseline, ``[B, Lmax]`` right-padded rows with a 2-D padding mask.
* :class:`SharedPromptBatch`: one row of bundles ``[P | R1 | R2 ...]``, each prompt once; per-token data
  live on "slots" (one per response token) instead of row positions.

Per-token data follow the "predicting position" convention: at position (or slot) ``t`` the model
predicts ``targets[t]``; ``loss_mask``, ``advantages``, ``old_logprobs``, ``rollout_logprobs`` and ``loss_normalizer``
refer to that prediction.
All layouts pass ``use_cache=False``: with a cache object present transformers does not treat
restarting position ids as packed sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdapo.packing.attention import PACKED_SDPA

__all__ = ["MicroBatch", "PackedBatch", "PaddedBatch", "SharedPromptBatch", "ATTN_IMPLS", "VARLEN_IMPLS"]

ATTN_IMPLS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", PACKED_SDPA)
VARLEN_IMPLS = ("flash_attention_2", "flash_attention_3", PACKED_SDPA)  # no mask: cu_seq_lens select blocks


@dataclass(kw_only=True)
class MicroBatch:
    """What every layout holds; the subclasses say how to feed and read it."""

    input_ids: torch.Tensor  # [1, T] or [B, Lmax]
    position_ids: torch.Tensor  # like input_ids
    cu_seqlens: torch.Tensor  # [S+1] int32 cumulative lengths of the real sequences (or prompt bundles)
    targets: torch.Tensor  # [N] int64, N = scored positions (0 where nothing is predicted)
    loss_mask: torch.Tensor  # [N] bool
    seq_index: list[int]  # input sequences held here, in layout order
    num_tokens: int  # real tokens computed, padding excluded
    attn_impl: str = "sdpa"
    attention_mask: torch.Tensor | None = None
    advantages: torch.Tensor | None = None  # [N] float32
    old_logprobs: torch.Tensor | None = None  # [N] float32; None: on-policy (ratio 1)
    rollout_logprobs: torch.Tensor | None = None  # [N] float32: the sampling engine's log-probs, if recorded
    loss_normalizer: torch.Tensor | None = None  # [N] float32: per-token loss divisors; None: the actor's scalar

    @property
    def seq_lens(self) -> list[int]:
        return self.cu_seqlens.diff().tolist()

    def to(self, device: torch.device) -> MicroBatch:
        for name in (
            "input_ids",
            "position_ids",
            "cu_seqlens",
            "targets",
            "loss_mask",
            "attention_mask",
            "advantages",
            "old_logprobs",
            "rollout_logprobs",
            "loss_normalizer",
        ):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def backbone_kwargs(self, mask_dtype: torch.dtype = torch.float32) -> dict:
        """Keyword arguments for ``model.model(**mb.backbone_kwargs())``; ``mask_dtype`` is the dtype of an
        additive mask (``eager``: 0 where attended, dtype min elsewhere)."""
        raise NotImplementedError

    def scored_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[positions, H]`` flattened last hidden states -> the rows that predict ``targets``."""
        return hidden

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        """``[N, ...]`` per-token values -> one ``[L_i, ...]`` tensor per held sequence, in ``seq_index`` order."""
        raise NotImplementedError


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


@dataclass(kw_only=True)
class PackedBatch(MicroBatch):
    """``attention_mask``: ``[1, 1, T, T]`` bool block-diagonal causal, or None for the varlen paths."""

    def backbone_kwargs(self, mask_dtype: torch.dtype = torch.float32) -> dict:
        kw = {"input_ids": self.input_ids, "position_ids": self.position_ids, "use_cache": False}
        if self.attn_impl in VARLEN_IMPLS:
            t = self.input_ids.shape[1]
            lens = self.seq_lens
            if sum(lens) < t:
                lens = lens + [t - sum(lens)]  # trailing padding is its own segment
            cu = torch.zeros(len(lens) + 1, dtype=torch.int32, device=self.input_ids.device)
            cu[1:] = torch.tensor(lens, dtype=torch.int32, device=cu.device).cumsum(0)
            kw.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(lens), max_length_k=max(lens))
            return kw
        mask = self.attention_mask
        kw["attention_mask"] = _additive(mask, mask_dtype) if self.attn_impl == "eager" else mask
        return kw

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        lens = self.seq_lens
        return list(values[: sum(lens)].split(lens)) if lens else []


@dataclass(kw_only=True)
class PaddedBatch(MicroBatch):
    """``attention_mask``: ``[B, Lmax]`` bool padding mask; per-token data flattened to ``[B * Lmax]``."""

    row_length: int  # Lmax

    def backbone_kwargs(self, mask_dtype: torch.dtype = torch.float32) -> dict:
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "use_cache": False,
            "attention_mask": self.attention_mask,
        }

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Takes ``[B * Lmax, ...]`` or ``[B, Lmax, ...]``."""
        flat = values.shape[0] == self.targets.numel()
        rows = values.reshape(-1, self.row_length, *values.shape[1:]) if flat else values
        return [rows[r, :n] for r, n in enumerate(self.seq_lens)]


@dataclass(kw_only=True)
class SharedPromptBatch(MicroBatch):
    """``cu_seqlens`` bounds the prompt bundles; slot ``k`` is predicted by row position ``pred_index[k]``.
    ``attention_mask``: ``[1, 1, T, T]`` bool (prompt + own branch), or None for ``packed_sdpa``."""

    pred_index: torch.Tensor  # [M] int64
    slot_map: list[tuple[int, int, int, int]]  # per held sequence: (slot, seq offset, count, seq len)
    bundles: list[tuple[int, int, list[int]]]  # per prompt bundle: (row start, prompt len, response lens)

    def to(self, device: torch.device) -> SharedPromptBatch:
        super().to(device)
        self.pred_index = self.pred_index.to(device)
        return self

    def backbone_kwargs(self, mask_dtype: torch.dtype = torch.float32) -> dict:
        kw = {"input_ids": self.input_ids, "position_ids": self.position_ids, "use_cache": False}
        if self.attn_impl == PACKED_SDPA:
            from fastdapo.packing.shared_attention import SharedPromptLayout

            kw["shared_prompt_bundles"] = SharedPromptLayout(self.bundles)  # one gather plan for every layer
            return kw
        mask = self.attention_mask
        kw["attention_mask"] = _additive(mask, mask_dtype) if self.attn_impl == "eager" else mask
        return kw

    def scored_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.index_select(0, self.pred_index)  # the last prompt row predicts every response's first token

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Slots -> the predicting positions of each sequence, 0 elsewhere."""
        out = []
        for slot, off, count, length in self.slot_map:
            v = values.new_zeros((length, *values.shape[1:]))
            v[off : off + count] = values[slot : slot + count]
            out.append(v)
        return out
