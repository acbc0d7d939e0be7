"""Kept groups -> per-sequence training rows (advantage broadcast, loss mask, overlong filter)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdapo.algorithm.advantage import group_advantages
from fastdapo.algorithm.dynamic_sampling import Group

# Per-token float data of a sequence, aligned to the predicting position t (t predicts token t+1);
# packing lays out exactly these attributes next to the tokens.
TOKEN_FIELDS = ("advantages", "old_logprobs", "rollout_logprobs", "loss_normalizer")


@dataclass
class Sequence:
    input_ids: torch.Tensor  # [L] int64, prompt + response
    loss_mask: torch.Tensor  # [L] bool: True at t when token t+1 is a scored response token
    advantages: torch.Tensor | None = None  # [L] float32
    old_logprobs: torch.Tensor | None = None  # [L] float32; None: on-policy, the ratio is 1
    # [L] float32: the sampling engine's log-prob of each response token (0 off the response); None when the
    # engine recorded none. Feeds the rollout-correction weights and the rollout_corr/* metrics.
    rollout_logprobs: torch.Tensor | None = None
    # [L] float32: each token's divisor in the loss (algorithm.loss_agg_mode seq-mean-token-mean), set by the
    # actor per mini-batch; None: one divisor for the whole mini-batch (token-mean)
    loss_normalizer: torch.Tensor | None = None
    prompt_len: int = 0  # tokens of input_ids that are prompt (0 = unknown: the prompt cannot be shared)
    group: int | None = None  # sequences of one group share their prompt (see fastdapo.packing.shared_prompt)

    def __len__(self) -> int:
        return int(self.input_ids.numel())

    def token_fields(self) -> dict[str, torch.Tensor]:
        """The per-token fields that are set, by attribute name."""
        return {k: v for k in TOKEN_FIELDS if (v := getattr(self, k)) is not None}


def _rollout_logprobs(gen, length: int) -> torch.Tensor:
    p, r = len(gen.prompt_ids), len(gen.response_ids)
    if len(gen.logprobs) != r:
        raise ValueError(f"engine returned {len(gen.logprobs)} log-probs for a response of {r} tokens")
    out = torch.zeros(length, dtype=torch.float32)
    out[p - 1 : p + r - 1] = torch.tensor(gen.logprobs, dtype=torch.float32)
    return out


def build_sequences(groups: list[Group], overlong_filtering: bool) -> tuple[list[Sequence], list[int]]:
    """Returns the sequences and, for each, its prompt uid (mini-batches are cut on whole groups).

    Engine log-probs are kept only when every generation has them: packing needs the same per-token
    fields on every sequence."""
    seqs: list[Sequence] = []
    uids: list[int] = []
    with_lp = bool(groups) and all(gen.logprobs is not None for g in groups for gen in g.generations)
    for g in groups:
        adv = group_advantages(torch.tensor(g.scores), len(g.scores))
        for gen, a in zip(g.generations, adv.tolist()):
            p, r = len(gen.prompt_ids), len(gen.response_ids)
            ids = torch.tensor(gen.prompt_ids + gen.response_ids, dtype=torch.long)
            mask = torch.zeros(p + r, dtype=torch.bool)
            # Position t predicts token t+1: response tokens are predicted from p-1 .. p+r-2.
            if not (overlong_filtering and gen.truncated):
                mask[p - 1 : p + r - 1] = True
            seqs.append(
                Sequence(
                    input_ids=ids,
                    loss_mask=mask,
                    prompt_len=p,
                    group=g.prompt.uid,
                    advantages=torch.full((p + r,), a, dtype=torch.float32),
                    rollout_logprobs=_rollout_logprobs(gen, p + r) if with_lp else None,
                )
            )
            uids.append(g.prompt.uid)
    return seqs, uids
