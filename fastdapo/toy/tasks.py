"""The built-in toy tasks behind one interface: the problem splits, prompt records and warm-start demos
that `toy.task` selects by name."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from fastdapo.config.schema import ToyConfig
from fastdapo.data.records import PromptRecord
from fastdapo.toy.chain import chain_demo, chain_records, chain_splits
from fastdapo.toy.task import arithmetic_demo, to_records, toy_splits

Demo = Callable[[object, random.Random], tuple[str, str]]  # (problem, rng) -> (prompt, response)


@dataclass(frozen=True)
class ToyTask:
    splits: Callable[[ToyConfig], tuple[list, list]]  # (train, eval) problems, fixed by the task's own seed
    records: Callable[[list, object], list[PromptRecord]]  # (problems, tokenizer) -> prompt records
    demo: Callable[..., tuple[str, str]]  # (problem, rng, noise=, format_noise=) -> (prompt, response)


TASKS = {
    "arithmetic": ToyTask(lambda t: toy_splits(t.max_operand, t.eval_size), to_records, arithmetic_demo),
    "chain": ToyTask(
        lambda t: chain_splits(t.chain_problems, t.chain_max_steps, t.eval_size), chain_records, chain_demo
    ),
}


def toy_splits_for(t: ToyConfig) -> tuple[list, list]:
    return TASKS[t.task].splits(t)


def toy_records(t: ToyConfig, tokenizer) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """(train, eval) prompt records of the configured task."""
    task = TASKS[t.task]
    train, evals = task.splits(t)
    return task.records(train, tokenizer), task.records(evals, tokenizer)


def toy_demo(t: ToyConfig) -> Demo:
    return partial(TASKS[t.task].demo, noise=t.sft_noise, format_noise=t.sft_format_noise)
