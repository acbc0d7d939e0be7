"""A sequence-parallel shard holds 1/S of a row and exactly the slots predicted from it; together the shards
of a group hold every slot once, with the whole row's targets, masks and per-token fields."""

import pytest
import torch

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.packer import build_packer
from fastdapo.packing.sequence_shard import predicting_positions, shard_micro_batch


def seqs_with_fields(groups=((5, (3, 9, 1)), (11, (7, 2)), (4, (13,)))):
    g = torch.Generator().manual_seed(0)
    out = []
    for group, (prompt, lens) in enumerate(groups):
        p = torch.randint(3, 60, (prompt,), generator=g)
        for r in lens:
            ids = torch.cat([p, torch.randint(3, 60, (r,), generator=g)])
            mask = torch.zeros(len(ids), dtype=torch.bool)
            mask[prompt - 1 : -1] = True
            adv = torch.randn(len(ids), generator=g)
            out.append(Sequence(ids, mask, advantages=adv, old_logprobs=-adv.abs(), prompt_len=prompt, group=group))
    return out


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("size", [2, 3, 4])
def test_shards_partition_the_row_and_its_slots(share, size):
    packer = build_packer(10_000, "packed_sdpa", share, pad_to_multiple_of=size)
    seqs = seqs_with_fields()
    mb = packer.pack(seqs, packer.plan(seqs), 1)[0]
    t = mb.input_ids.shape[1]
    assert t % size == 0
    shards = [shard_micro_batch(mb, r, size) for r in range(size)]
    assert torch.equal(torch.cat([s.input_ids for s in shards], 1), mb.input_ids)
    assert torch.equal(torch.cat([s.position_ids for s in shards], 1), mb.position_ids)
    real = [s.slots for s in shards if s.slots.numel()]
    assert torch.equal(torch.sort(torch.cat(real)).values, torch.arange(mb.targets.numel()))
    pred = predicting_positions(mb)
    for r, s in enumerate(shards):
        n = s.slots.numel()
        assert torch.equal(s.local_pred[:n] + r * t // size, pred[s.slots])
        for name in ("targets", "loss_mask", "advantages", "old_logprobs"):
            assert torch.equal(getattr(s, name)[:n], getattr(mb, name)[s.slots]), name
        kw = s.backbone_kwargs()  # the whole row's cut points, this shard's tokens
        assert kw["input_ids"].shape[1] == t // size and kw["sequence_parallel"] is None
        if not share:
            assert kw["cu_seq_lens_q"][-1] == t
    # whole(): each slot comes from the one shard that scored it
    values = [mb.advantages[s.slots] if s.slots.numel() else torch.zeros(1) for s in shards]
    parts = [s.whole(v, lambda x: x) for s, v in zip(shards, values)]
    assert torch.equal(sum(parts), mb.advantages)
    assert all(torch.equal(a, b) for a, b in zip(shards[0].unpack(mb.targets), mb.unpack(mb.targets), strict=True))


def test_a_shard_that_predicts_nothing_scores_one_masked_slot():
    """A long shared prompt fills the first shard: it predicts no response token, but its loss must still
    depend on its hidden states (its backward runs the all-to-alls the other ranks wait on)."""
    packer = build_packer(10_000, "packed_sdpa", True, pad_to_multiple_of=2)
    seqs = seqs_with_fields(groups=((40, (2, 3)),))
    mb = packer.pack(seqs, packer.plan(seqs), 1)[0]
    first = shard_micro_batch(mb, 0, 2)
    assert first.slots.numel() == 0
    assert first.targets.shape == first.loss_mask.shape == first.local_pred.shape == (1,)
    assert not first.loss_mask.any()
    assert torch.equal(first.whole(torch.tensor([7.0]), lambda x: x), torch.zeros(mb.targets.numel()))


def test_rows_that_do_not_split_evenly_and_masked_attention_are_refused():
    seqs = seqs_with_fields()
    packer = build_packer(10_000, "packed_sdpa", False)
    mb = packer.pack(seqs, packer.plan(seqs), 1)[0]
    if mb.input_ids.shape[1] % 7:
        with pytest.raises(ValueError, match="does not split into 7 equal shards"):
            shard_micro_batch(mb, 0, 7)
    masked = build_packer(10_000, "sdpa", False, pad_to_multiple_of=2)
    mb = masked.pack(seqs, masked.plan(seqs), 1)[0]
    with pytest.raises(ValueError, match="needs an attention that takes the row's cut points"):
        shard_micro_batch(mb, 0, 2)
