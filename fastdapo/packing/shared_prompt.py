"""Shared-prompt packing: each group's prompt is computed once for all of its responses.

A DAPO group is G responses to one prompt. Packed one after another, the prompt is run G times in
both actor passes although its activations are identical every time (causal attention: prompt
tokens never see the responses). Here a micro-batch row holds *bundles* ``[P | R1 | R2 | ... ]``:
the prompt once, then the responses, each attending to the whole prompt and causally to itself
(position ids continue from the prompt for every response). The prompt's activations receive the
summed gradient of all responses, so losses and gradients equal those of the unshared layout.

Because the last prompt position predicts the first token of *every* response, per-token data move
from row positions to "slots": slot ``k`` is predicted by the hidden state at ``pred_index[k]``.
Only response tokens get slots, so the LM head and the loss never run on prompt positions.

Attention: a 4-D boolean mask for ``sdpa`` / ``eager``; for ``packed_sdpa`` (the per-sequence SDPA of
:mod:`fastdapo.packing.attention`) the bundle structure travels as the ``shared_prompt_bundles``
keyword and no ``T x T`` mask is built. flash-attention's varlen kernel cannot express a shared
prefix, so those models keep the plain packed layout.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.attention import PACKED_SDPA
from fastdapo.packing.layouts import ATTN_IMPLS, SharedPromptBatch
from fastdapo.packing.packed import _device, _field_dtypes, _validate, plan_micro_batches

__all__ = ["SHARED_ATTN_IMPLS", "Bundle", "make_bundles", "make_shared_micro_batches", "shared_prompt_mask"]

SHARED_ATTN_IMPLS = ("sdpa", "eager", PACKED_SDPA)


@dataclass
class Bundle:
    seq_index: list[int]  # sequences sharing one prompt, in layout order
    prompt_len: int
    resp_lens: list[int]

    def __len__(self) -> int:
        return self.prompt_len + sum(self.resp_lens)


def _check(seqs: list[Sequence]) -> None:
    _validate(seqs)
    for i, s in enumerate(seqs):
        p = s.prompt_len
        if not 0 < p <= len(s):
            raise ValueError(f"sequence {i}: prompt_len {p} must be in [1, {len(s)}] to share the prompt")
        if bool(s.loss_mask[: p - 1].any()):
            raise ValueError(
                f"sequence {i}: loss_mask is set inside the prompt; only response tokens can be scored "
                f"with a shared prompt"
            )


def make_bundles(seqs: list[Sequence], max_tokens: int) -> list[Bundle]:
    """Sequences of one group -> bundles of at most ``max_tokens`` tokens (a lone response longer
    than that gets a bundle of its own, like an over-long sequence in plain packing)."""
    _check(seqs)
    by_group: dict[object, list[int]] = defaultdict(list)
    for i, s in enumerate(seqs):
        by_group[s.group if s.group is not None else ("single", i)].append(i)
    bundles = []
    for key, members in by_group.items():
        first = seqs[members[0]]
        p = first.prompt_len
        for i in members[1:]:
            s = seqs[i]
            if s.prompt_len != p or not torch.equal(s.input_ids[:p], first.input_ids[:p]):
                raise ValueError(f"sequences {members[0]} and {i} are in group {key} but have different prompts")
        cur: list[int] = []
        for i in members:
            r = len(seqs[i]) - p
            if cur and p + sum(len(seqs[j]) - p for j in cur) + r > max_tokens:
                bundles.append(Bundle(cur, p, [len(seqs[j]) - p for j in cur]))
                cur = []
            cur.append(i)
        bundles.append(Bundle(cur, p, [len(seqs[j]) - p for j in cur]))
    return bundles


def shared_prompt_mask(bundle_ids: torch.Tensor, branch_ids: torch.Tensor) -> torch.Tensor:
    """``[T]`` bundle ids and branch ids (0 = prompt, k = k-th response) -> ``[1, 1, T, T]`` bool mask:
    query i may see key j of its own bundle when j <= i and j is in the prompt or in i's own branch."""
    t = bundle_ids.numel()
    ar = torch.arange(t, device=bundle_ids.device)
    same = bundle_ids[:, None] == bundle_ids[None, :]
    branch_ok = (branch_ids[None, :] == 0) | (branch_ids[:, None] == branch_ids[None, :])
    return (same & branch_ok & (ar[:, None] >= ar[None, :]))[None, None]


def _pack_bundles(
    seqs: list[Sequence],
    bundles: list[Bundle],
    attn_impl: str,
    pad_token_id: int,
    dtypes: dict[str, torch.dtype],
    device: torch.device,
    pad_to_multiple_of: int | None = None,
) -> SharedPromptBatch:
    # index bookkeeping in plain Python, then one concatenation per tensor (hundreds of tiny ops otherwise)
    ids, targets, masks, fields = [], [], [], {k: [] for k in dtypes}
    positions: list[int] = []
    pred: list[int] = []
    slot_map, layout, seq_index = [], [], []
    off = slot = 0
    for b in bundles:
        p = b.prompt_len
        ids.append(seqs[b.seq_index[0]].input_ids[:p])
        positions.extend(range(p))
        layout.append((off, p, list(b.resp_lens)))
        r_off = off + p
        for i, r in zip(b.seq_index, b.resp_lens):
            s = seqs[i]
            ids.append(s.input_ids[p:])
            positions.extend(range(p, p + r))
            # slot j predicts response token j: from the last prompt position, then from the response itself
            if r:
                pred.append(off + p - 1)
                pred.extend(range(r_off, r_off + r - 1))
            targets.append(s.input_ids[p:])
            masks.append(s.loss_mask[p - 1 : p - 1 + r])
            for name in fields:
                fields[name].append(getattr(s, name)[p - 1 : p - 1 + r])
            slot_map.append((slot, p - 1, r, len(s)))
            seq_index.append(i)
            slot += r
            r_off += r
        off = r_off
    total = max(off, 1)  # an empty micro-batch still runs one padding token
    if pad_to_multiple_of:
        total = -(-total // pad_to_multiple_of) * pad_to_multiple_of
    if off < total:
        ids.append(torch.full((total - off,), pad_token_id, dtype=torch.long))
        positions.extend(range(total - off))
        layout.append((off, total - off, []))  # trailing padding: a causal block of its own
    if slot == 0:  # nothing to score: one dummy slot keeps the loss shapes non-empty
        pred = [0]
        targets = [torch.zeros(1, dtype=torch.long)]
        masks = [torch.zeros(1, dtype=torch.bool)]
        fields = {k: [torch.zeros(1, dtype=dt)] for k, dt in dtypes.items()}
    mask = None
    if attn_impl != PACKED_SDPA:
        bundle_ids = torch.repeat_interleave(
            torch.arange(len(layout)), torch.tensor([p + sum(rs) for _, p, rs in layout])
        )
        branch_ids = torch.cat(
            [torch.repeat_interleave(torch.arange(1 + len(rs)), torch.tensor([p, *rs])) for _, p, rs in layout]
        )
        mask = shared_prompt_mask(bundle_ids, branch_ids).to(device)
    cu = torch.tensor([0] + [len(b) for b in bundles], dtype=torch.int64).cumsum(0).to(torch.int32)
    return SharedPromptBatch(
        input_ids=torch.cat(ids).to(device)[None],
        position_ids=torch.tensor(positions, device=device)[None],
        attention_mask=mask,
        cu_seqlens=cu.to(device),
        targets=torch.cat(targets).to(device),
        loss_mask=torch.cat(masks).to(device=device, dtype=torch.bool),
        **{k: torch.cat(v).to(device=device, dtype=dtypes[k]) for k, v in fields.items()},
        seq_index=seq_index,
        num_tokens=off,
        attn_impl=attn_impl,
        pred_index=torch.tensor(pred, dtype=torch.long, device=device),
        slot_map=slot_map,
        bundles=layout,
    )


def make_shared_micro_batches(
    seqs: list[Sequence],
    max_tokens: int,
    *,
    num_micro_batches: int | None = None,
    attn_impl: str = PACKED_SDPA,
    pad_token_id: int = 0,
    bundles: list[Bundle] | None = None,
    plan: list[list[int]] | None = None,
    pad_to_multiple_of: int | None = None,
) -> list[SharedPromptBatch]:
    """Like :func:`fastdapo.packing.packed.make_micro_batches`, but the balanced units are prompt
    bundles (``make_bundles(seqs, max_tokens)`` unless given; ``plan`` indexes them) and every
    micro-batch uses the shared-prompt layout."""
    if attn_impl not in SHARED_ATTN_IMPLS:
        raise ValueError(f"shared prompts need attn_impl in {SHARED_ATTN_IMPLS} (of {ATTN_IMPLS}), got {attn_impl!r}")
    bundles = make_bundles(seqs, max_tokens) if bundles is None else bundles
    if plan is None:
        plan = plan_micro_batches([len(b) for b in bundles], max_tokens, num_micro_batches)
    dtypes, device = _field_dtypes(seqs), _device(seqs)
    return [
        _pack_bundles(seqs, [bundles[j] for j in p], attn_impl, pad_token_id, dtypes, device, pad_to_multiple_of)
        for p in plan
    ]
