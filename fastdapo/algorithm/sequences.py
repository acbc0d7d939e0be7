"""Kept groups -> per-sequence training rows (advantage broadcast, loss mask, overlong filter)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdapo.algorithm.advantage import group_advantages
from fastdapo.algorithm.dynamic_sampling import Group

# Per-token float data of a sequence, aligned to the predicting position t (t predicts token t+1);
# packing lays out exactly these attributes next to the tokens.
TOKEN_FIELDS = ("advantages", "old_logprobs")


@dataclass
class Sequence:
    input_ids: torch.Tensor  # [L] int64, prompt + response
    loss_mask: torch.Tensor  # [L] bool: True at t when token t+1 is a scored response token
    advantages: torch.Tensor | None = None  # [L] float32
    old_logprobs: torch.Tensor | None = None  # [L] float32; None: on-policy, the ratio is 1
    prompt_len: int = 0  # tokens of input_ids that are prompt (0 = unknown: the prompt cannot be shared)
    group: int | None = None  # sequences of one group share their prompt (see fastdapo.packing.shared_prompt)

    def __len__(self) -> int:
        return int(self.input_ids.numel())

    def token_fields(self) -> dict[str, torch.Tensor]:
        """The per-token fields that are set, by attribute name."""
        return {k: v for k in TOKEN_FIELDS if (v := getattr(self, k)) is not None}


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
                                 advantages=torch.full((p + r,), a, dtype=torch.float32)))
            uids.append(g.prompt.uid)
    return seqs, uids
