"""The built-in toy tasks behind one interface: the problem splits, prompt records and warm-start demos
that `toy.task` selects."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from fastdapo.config.schema import ToyConfig
from fastdapo.data.records import PromptRecord
from fastdapo.toy.chain import chain_demo, chain_records, chain_splits
from fastdapo.toy.task import arithmetic_demo, to_records, toy_splits

Demo = Callable[[object, random.Random], tuple[str, str]]  # (problem, rng) -> (prompt, response)


def toy_splits_for(t: ToyConfig) -> tuple[list, list]:
    if t.task == "chain":
        return chain_splits(t.chain_problems, t.chain_max_steps, t.eval_size)
    return toy_splits(t.max_operand, t.eval_size)


def toy_records(t: ToyConfig, tokenizer) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """(train, eval) prompt records of the configured task."""
    to = chain_records if t.task == "chain" else to_records
    train, evals = toy_splits_for(t)
    return to(train, tokenizer), to(evals, tokenizer)


def toy_demo(t: ToyConfig) -> Demo:
    demo = chain_demo if t.task == "chain" else arithmetic_demo
    return partial(demo, noise=t.sft_noise, format_noise=t.sft_format_noise)
