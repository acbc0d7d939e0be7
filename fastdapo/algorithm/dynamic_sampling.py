"""Dynamic Sampling: keep only groups whose accuracy is neither all 0 nor all 1.

Generation rounds of `gen_batch_size` prompts continue until `train_batch_size` informative groups
are collected or `max_num_gen_batches` rounds were spent; then the step goes on with what it has.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from fastdapo.data.records import PromptRecord
from fastdapo.rollout.base import Generation

log = logging.getLogger(__name__)


@dataclass
class Group:
    prompt: PromptRecord
    generations: list[Generation]
    scores: list[float]          # shaped rewards (correctness + overlong penalty)
    accs: list[bool]             # correctness only: the filter looks at this

    @property
    def informative(self) -> bool:
        return 0 < sum(self.accs) < len(self.accs)


@dataclass
class SamplingOutcome:
    kept: list[Group]
    generated: list[Group] = field(default_factory=list)   # every group of every round (for metrics)
    gen_batches: int = 0
    exhausted: bool = False      # stopped by max_num_gen_batches before the batch was full

    @property
    def kept_frac(self) -> float:
        return len(self.kept) / max(1, len(self.generated))


def collect(next_prompts: Callable[[int], list[PromptRecord]], rollout: Callable[[list[PromptRecord]], list[Group]],
            train_batch_size: int, gen_batch_size: int, max_num_gen_batches: int, enabled: bool = True,
            global_count: Callable[[int], int] = lambda n: n) -> SamplingOutcome:
    """`global_count` sums a local count over data-parallel ranks so every rank stops together."""
    out = SamplingOutcome(kept=[])
    if not enabled:
        groups = rollout(next_prompts(train_batch_size))
        out.kept, out.generated, out.gen_batches = list(groups), list(groups), 1
        return out
    while True:
        groups = rollout(next_prompts(gen_batch_size))
        out.generated += groups
        out.kept += [g for g in groups if g.informative]
        out.gen_batches += 1
        if global_count(len(out.kept)) >= train_batch_size:
            break
        if max_num_gen_batches and out.gen_batches >= max_num_gen_batches:
            out.exhausted = True
            break
    kept_total = global_count(len(out.kept))
    if out.exhausted:
        log.warning("dynamic sampling: %d of %d wanted informative groups after %d generation batches "
                    "(%d groups generated, max_num_gen_batches=%d); continuing with the %d collected",
                    kept_total, train_batch_size, out.gen_batches, global_count(len(out.generated)),
                    max_num_gen_batches, kept_total)
    # Surplus groups are dropped, as in the reference implementation: the batch size stays fixed.
    out.kept = out.kept[: _local_cap(len(out.kept), kept_total, train_batch_size)]
    return out


def _local_cap(local: int, total: int, wanted: int) -> int:
    if total <= wanted or total == 0:
        return local
    return max(0, round(local * wanted / total))
