"""Sequence packing: many variable-length sequences per micro-batch row, no padding.

Planning (:func:`plan_micro_batches`) assigns sequences to micro-batches under a token budget;
:func:`make_micro_batches` lays each micro-batch out as a :class:`~fastdapo.packing.layouts.PackedBatch`:
one row of ``T`` tokens, position ids restarting at 0 for every sequence, attention kept inside each
sequence by a 4-D block-diagonal mask (``sdpa``, ``eager``) or by ``cu_seq_lens`` (``packed_sdpa``,
flash-attention). :func:`make_padded_micro_batches` builds the padded baseline from the same plan.
"""

from __future__ import annotations

import math

import torch

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.layouts import ATTN_IMPLS, VARLEN_IMPLS, MicroBatch, PackedBatch, PaddedBatch
from fastdapo.packing.partition import balanced_partition

__all__ = [
    "make_micro_batches",
    "make_padded_micro_batches",
    "plan_micro_batches",
    "scatter_back",
    "padding_fraction",
    "block_causal_mask",
]


# ----------------------------------------------------------------------------------------------------------
# planning: which sequence goes to which micro-batch


def _validate(seqs: list[Sequence]) -> None:
    for i, s in enumerate(seqs):
        n = s.input_ids.numel()
        if s.input_ids.dim() != 1 or n < 1:
            raise ValueError(
                f"sequence {i}: input_ids must be a non-empty 1-D tensor, got shape {tuple(s.input_ids.shape)}"
            )
        if s.loss_mask.shape != (n,):
            raise ValueError(f"sequence {i}: loss_mask shape {tuple(s.loss_mask.shape)} != ({n},)")
        for k, v in s.token_fields().items():
            if v.shape != (n,):
                raise ValueError(f"sequence {i}: {k} shape {tuple(v.shape)} != ({n},)")
    if seqs:
        keys = set(seqs[0].token_fields())
        for i, s in enumerate(seqs):
            if set(s.token_fields()) != keys:
                raise ValueError(
                    f"sequence {i}: per-token fields {sorted(s.token_fields())} differ from sequence 0 {sorted(keys)}"
                )


def _fits(parts: list[list[int]], lengths: list[int], max_tokens: int) -> bool:
    return all(len(p) <= 1 or sum(lengths[i] for i in p) <= max_tokens for p in parts)


def _partition_small(lengths: list[int], small: list[int], k: int) -> list[list[int]]:
    parts = balanced_partition([lengths[i] for i in small], k)
    return [[small[j] for j in p] for p in parts]


def plan_micro_batches(lengths: list[int], max_tokens: int, num_micro_batches: int | None = None) -> list[list[int]]:
    """Assign sequence indices to micro-batches (the planning half of :func:`make_micro_batches`).

    Sequences longer than ``max_tokens`` get a micro-batch of their own; the others are spread over the
    remaining micro-batches by a balanced partition, using the smallest count for which no micro-batch
    exceeds ``max_tokens`` (starting from ``ceil(tokens / max_tokens)``). With ``num_micro_batches``
    larger than that, exactly ``num_micro_batches`` are returned; micro-batches that no sequence can
    fill are returned empty (``[]``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    big = [i for i, n in enumerate(lengths) if n > max_tokens]
    small = [i for i, n in enumerate(lengths) if n <= max_tokens]
    small_tokens = sum(lengths[i] for i in small)

    # smallest count that respects the budget
    k_small, parts = 0, []
    if small:
        k_small = math.ceil(small_tokens / max_tokens)
        while True:  # ends at the latest with one sequence per micro-batch
            parts = _partition_small(lengths, small, k_small)
            if _fits(parts, lengths, max_tokens):
                break
            k_small += 1
    need = len(big) + k_small
    target = max(need, num_micro_batches or 0, 1 if lengths else 0)

    if target > need and small:
        # try a fresh balanced partition with more parts; keep it only if it still respects the budget
        extra = min(target - len(big), len(small))
        candidate = _partition_small(lengths, small, extra)
        if _fits(candidate, lengths, max_tokens):
            parts = candidate
        else:
            # split the heaviest multi-sequence part in two until the count is reached (never grows a part)
            while len(parts) < extra:
                j = max(
                    (j for j in range(len(parts)) if len(parts[j]) > 1), key=lambda j: sum(lengths[i] for i in parts[j])
                )
                halves = _partition_small(lengths, parts[j], 2)
                parts[j : j + 1] = halves
    plan = [[i] for i in big] + [p for p in parts if p]
    plan += [[] for _ in range(target - len(plan))]
    plan = [sorted(p) for p in plan]
    # heaviest first: the first micro-batch shows the peak memory early
    plan.sort(key=lambda p: (-sum(lengths[i] for i in p), p[0] if p else len(lengths)))
    return plan


# ----------------------------------------------------------------------------------------------------------
# building micro-batches


def block_causal_mask(seg_ids: torch.Tensor) -> torch.Tensor:
    """``[T]`` segment ids -> ``[1, 1, T, T]`` bool mask, True where query i may attend key j
    (same segment and j <= i)."""
    t = seg_ids.numel()
    ar = torch.arange(t, device=seg_ids.device)
    mask = (seg_ids[:, None] == seg_ids[None, :]) & (ar[:, None] >= ar[None, :])
    return mask[None, None]


def _field_dtypes(seqs: list[Sequence]) -> dict[str, torch.dtype]:
    return {k: v.dtype for k, v in seqs[0].token_fields().items()} if seqs else {}


def _shifted(s: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    ids = s.input_ids
    targets = torch.zeros_like(ids)
    targets[:-1] = ids[1:]
    mask = s.loss_mask.to(torch.bool).clone()
    mask[-1] = False
    return targets, mask


def _pack(
    seqs: list[Sequence],
    index: list[int],
    attn_impl: str,
    pad_to_multiple_of: int | None,
    pad_token_id: int,
    dtypes: dict[str, torch.dtype],
    device: torch.device,
) -> PackedBatch:
    chosen = [seqs[i] for i in index]
    lens = [len(s) for s in chosen]
    n_real = sum(lens)
    total = max(n_real, 1)  # an empty micro-batch still holds one padding token so every rank runs a forward
    if pad_to_multiple_of:
        total = -(-total // pad_to_multiple_of) * pad_to_multiple_of
    n_pad = total - n_real

    input_ids = torch.full((total,), pad_token_id, dtype=torch.long, device=device)
    position_ids = torch.zeros(total, dtype=torch.long, device=device)
    seg_ids = torch.full((total,), len(chosen), dtype=torch.long, device=device)  # padding: its own segment
    targets = torch.zeros(total, dtype=torch.long, device=device)
    loss_mask = torch.zeros(total, dtype=torch.bool, device=device)
    fields = {k: torch.zeros(total, dtype=dt, device=device) for k, dt in dtypes.items()}
    off = 0
    for j, (s, n) in enumerate(zip(chosen, lens)):
        sl = slice(off, off + n)
        input_ids[sl] = s.input_ids
        position_ids[sl] = torch.arange(n, device=device)
        seg_ids[sl] = j
        targets[sl], loss_mask[sl] = _shifted(s)
        for k in fields:
            fields[k][sl] = getattr(s, k)
        off += n
    position_ids[off:] = torch.arange(n_pad, device=device)
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32, device=device)
    if lens:
        cu[1:] = torch.tensor(lens, device=device).cumsum(0)
    mask = None if attn_impl in VARLEN_IMPLS else block_causal_mask(seg_ids)
    return PackedBatch(
        input_ids=input_ids[None],
        position_ids=position_ids[None],
        attention_mask=mask,
        cu_seqlens=cu,
        targets=targets,
        loss_mask=loss_mask,
        **fields,
        seq_index=list(index),
        num_tokens=n_real,
        attn_impl=attn_impl,
    )


def _device(seqs: list[Sequence]) -> torch.device:
    return seqs[0].input_ids.device if seqs else torch.device("cpu")


def _prepare(seqs: list[Sequence], max_tokens: int, num_micro_batches, attn_impl: str, plan):
    """Checks shared by both layouts, then (plan, per-token field dtypes, device)."""
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
    _validate(seqs)
    if plan is None:
        plan = plan_micro_batches([len(s) for s in seqs], max_tokens, num_micro_batches)
    return plan, _field_dtypes(seqs), _device(seqs)


def make_micro_batches(
    seqs: list[Sequence],
    max_tokens: int,
    *,
    num_micro_batches: int | None = None,
    attn_impl: str = "sdpa",
    pad_to_multiple_of: int | None = None,
    pad_token_id: int = 0,
    plan: list[list[int]] | None = None,
) -> list[PackedBatch]:
    """Pack ``seqs`` into micro-batches of at most ``max_tokens`` real tokens each.

    Count = max(smallest count that fits the budget (>= ceil(total / max_tokens)), ``num_micro_batches``).
    A sequence longer than ``max_tokens`` gets a micro-batch of its own. Micro-batches that no sequence
    can fill (``num_micro_batches`` above the number of sequences) hold a single padding token with an
    all-False loss mask (``num_tokens == 0``, ``seq_index == []``) so that every data-parallel rank still
    runs the same number of forward/backward passes. ``pad_to_multiple_of`` pads each row at the end
    (padding forms its own attention block and is never scored). ``plan`` (from :func:`plan_micro_batches`)
    skips the planning.
    """
    plan, dtypes, device = _prepare(seqs, max_tokens, num_micro_batches, attn_impl, plan)
    return [_pack(seqs, p, attn_impl, pad_to_multiple_of, pad_token_id, dtypes, device) for p in plan]


def make_padded_micro_batches(
    seqs: list[Sequence],
    max_tokens: int,
    *,
    num_micro_batches: int | None = None,
    attn_impl: str = "sdpa",
    pad_token_id: int = 0,
    plan: list[list[int]] | None = None,
) -> list[PaddedBatch]:
    """Baseline layout: the same sequence-to-micro-batch plan as :func:`make_micro_batches` (or ``plan``),
    but each micro-batch is a ``[B, Lmax]`` batch of right-padded rows with a 2-D padding mask.
    ``targets``, ``loss_mask`` and ``fields`` are flattened to ``[B * Lmax]``."""
    plan, dtypes, device = _prepare(seqs, max_tokens, num_micro_batches, attn_impl, plan)
    out = []
    for index in plan:
        chosen = [seqs[i] for i in index]
        lens = [len(s) for s in chosen]
        b, lmax = max(len(chosen), 1), max(lens, default=1)
        input_ids = torch.full((b, lmax), pad_token_id, dtype=torch.long, device=device)
        attn = torch.zeros(b, lmax, dtype=torch.bool, device=device)
        targets = torch.zeros(b, lmax, dtype=torch.long, device=device)
        loss_mask = torch.zeros(b, lmax, dtype=torch.bool, device=device)
        fields = {k: torch.zeros(b, lmax, dtype=dt, device=device) for k, dt in dtypes.items()}
        for r, (s, n) in enumerate(zip(chosen, lens)):
            input_ids[r, :n] = s.input_ids
            attn[r, :n] = True
            targets[r, :n], loss_mask[r, :n] = _shifted(s)
            for k in fields:
                fields[k][r, :n] = getattr(s, k)
        if not chosen:
            attn[0, 0] = True  # a lone padding token must see itself
        cu = torch.zeros(len(lens) + 1, dtype=torch.int32, device=device)
        if lens:
            cu[1:] = torch.tensor(lens, device=device).cumsum(0)
        position_ids = torch.arange(lmax, device=device).expand(b, lmax).contiguous()
        out.append(
            PaddedBatch(
                input_ids=input_ids,
                position_ids=position_ids,
                attention_mask=attn,
                cu_seqlens=cu,
                targets=targets.reshape(-1),
                loss_mask=loss_mask.reshape(-1),
                **{k: v.reshape(-1) for k, v in fields.items()},
                seq_index=list(index),
                num_tokens=sum(lens),
                attn_impl=attn_impl,
                row_length=lmax,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------------
# un-packing


def scatter_back(mbs: list[MicroBatch], per_mb_values: list[torch.Tensor], n_seqs: int) -> list[torch.Tensor]:
    """Per-micro-batch ``[T]`` values -> one tensor per input sequence, in the original order."""
    if len(mbs) != len(per_mb_values):
        raise ValueError(f"{len(mbs)} micro-batches but {len(per_mb_values)} value tensors")
    out: list[torch.Tensor | None] = [None] * n_seqs
    for mb, vals in zip(mbs, per_mb_values):
        for i, v in zip(mb.seq_index, mb.unpack(vals)):
            if out[i] is not None:
                raise ValueError(f"sequence {i} appears in more than one micro-batch")
            out[i] = v
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        raise ValueError(f"sequences {missing[:10]} are in no micro-batch")
    return out  # type: ignore[return-value]


def padding_fraction(mbs: list[MicroBatch]) -> float:
    """Share of the computed token slots that are padding."""
    slots = sum(mb.input_ids.numel() for mb in mbs)
    real = sum(mb.num_tokens for mb in mbs)
    return 0.0 if slots == 0 else 1.0 - real / slots
