"""Dynamic Sampling: keep only groups whose accuracy is neither all 0 nor all 1.

Generation rounds of `gen_batch_size` prompts continue until `train_batch_size` informative groups
are collected or `max_num_gen_batches` rounds were spent; then the step goes on with what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastdapo.data.records import PromptRecord
from fastdapo.rollout.base import Generation

log = logging.getLogger(__name__)


@dataclass
class Group:
    prompt: PromptRecord
    generations: list[Generation]
    scores: list[float]  # shaped rewards (correctness + overlong penalty)
    accs: list[bool]  # correctness only: the filter looks at this

    @property
    def informative(self) -> bool:
        return 0 < sum(self.accs) < len(self.accs)


@dataclass
class SamplingOutcome:
    kept: list[Group]  # this rank's kept groups
    generated: list[Group] = field(default_factory=list)  # every group of every round (for metrics)
    kept_uids: list[int] = field(default_factory=list)  # kept prompt uids of ALL ranks, sorted
    gen_batches: int = 0
    exhausted: bool = False  # stopped by max_num_gen_batches before the batch was full


def collect(
    next_prompts: Callable[[int], list[PromptRecord]],
    rollout: Callable[[list[PromptRecord]], list[Group]],
    train_batch_size: int,
    gen_batch_size: int,
    max_num_gen_batches: int,
    enabled: bool = True,
    gather: Callable[[list[int]], list[int]] = lambda uids: list(uids),
) -> SamplingOutcome:
    """`gather` concatenates a list over data-parallel ranks.

    The kept set is chosen globally (the first `train_batch_size` informative prompts in stream
    order), so it is the same whatever the number of processes.
    """
    out = SamplingOutcome(kept=[])
    candidates: list[Group] = []
    while True:
        groups = rollout(next_prompts(train_batch_size if not enabled else gen_batch_size))
        out.generated += groups
        candidates += [g for g in groups if g.informative or not enabled]
        out.gen_batches += 1
        found = len(gather([g.prompt.uid for g in candidates]))
        if not enabled or found >= train_batch_size:
            break
        if max_num_gen_batches and out.gen_batches >= max_num_gen_batches:
            out.exhausted = True
            log.warning(
                "dynamic sampling: %d of %d wanted informative groups after %d generation batches "
                "(%d groups generated, max_num_gen_batches=%d); continuing with the %d collected",
                found,
                train_batch_size,
                out.gen_batches,
                len(gather([g.prompt.uid for g in out.generated])),
                max_num_gen_batches,
                found,
            )
            break
    # Surplus groups are dropped, as in the reference implementation: the batch size stays fixed.
    out.kept_uids = sorted(gather([g.prompt.uid for g in candidates]))[:train_batch_size]
    chosen = set(out.kept_uids)
    out.kept = [g for g in candidates if g.prompt.uid in chosen]
    return out


def minibatch_plan(kept_uids: list[int], mini_batch_size: int, rng) -> list[set[int]]:
    """Shuffle the global kept set (same rng on every rank) and cut it into mini-batches of prompts."""
    order = list(kept_uids)
    rng.shuffle(order)
    return [set(order[i : i + mini_batch_size]) for i in range(0, len(order), mini_batch_size)]
