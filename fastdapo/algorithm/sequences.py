"""Kept groups -> per-sequence training rows (advantage broadcast, loss mask, overlong filter)."""
from __future__ import annotations

import torch

from fastdapo.algorithm.advantage import group_advantages
from fastdapo.algorithm.dynamic_sampling import Group
from fastdapo.packing.packed import Sequence


def build_sequences(groups: list[Group], overlong_filtering: bool) -> tuple[list[Sequence], list[int]]:
    """Returns the sequences and, for each, its prompt uid (mini-batches are cut on whole groups)."""
    seqs: list[Sequence] = []
    uids: list[int] = []
    for g in groups:
        adv = group_advantages(torch.tensor(g.scores), len(g.scores))
        for gen, a in zip(g.generations, adv.tolist()):
            p, r = len(gen.prompt_ids), len(gen.response_ids)
            ids = torch.tensor(gen.prompt_ids + gen.response_ids, dtype=torch.long)
            mask = torch.zeros(p + r, dtype=torch.bool)
            # Position t predicts token t+1: response tokens are predicted from p-1 .. p+r-2.
            if not (overlong_filtering and gen.truncated):
                mask[p - 1: p + r - 1] = True
            seqs.append(Sequence(input_ids=ids, loss_mask=mask, prompt_len=p, group=g.prompt.uid,
                                 fields={"advantages": torch.full((p + r,), a, dtype=torch.float32)}))
            uids.append(g.prompt.uid)
    return seqs, uids
