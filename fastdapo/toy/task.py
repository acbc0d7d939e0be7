"""Synthetic arithmetic problems that ask for the DAPO answer format (last line `Answer: N`)."""

from __future__ import annotations

import random

from fastdapo.data.records import PromptRecord
from fastdapo.toy.spec import PROMPT


def all_problems(max_operand: int) -> list[tuple[int, str, int]]:
    return [(a, op, b) for a in range(max_operand + 1) for b in range(max_operand + 1) for op in "+-"]


def solve(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def reference_response(a: int, op: str, b: int) -> str:
    return f"Answer: {solve(a, op, b)}"


def arithmetic_demo(
    problem: tuple[int, str, int], rng: random.Random, noise: float, format_noise: float
) -> tuple[str, str]:
    """A warm-start (prompt, response): off by 1-2 with probability `noise`, in the wrong format
    ("The answer is N.") with probability `format_noise`."""
    a, op, b = problem
    answer = solve(a, op, b) + (rng.choice((-2, -1, 1, 2)) if rng.random() < noise else 0)
    text = f"The answer is {answer}." if rng.random() < format_noise else f"Answer: {answer}"
    return PROMPT.format(a=a, op=op, b=b), text


def toy_splits(max_operand: int, eval_size: int, seed: int = 1234):
    """Disjoint (train, eval) lists of problems; the split is fixed by the seed, not the run seed."""
    probs = all_problems(max_operand)
    random.Random(seed).shuffle(probs)
    if eval_size >= len(probs):
        raise ValueError(f"toy.eval_size {eval_size} leaves no training problems (only {len(probs)} exist)")
    return probs[eval_size:], probs[:eval_size]


def to_records(problems, tokenizer) -> list[PromptRecord]:
    out = []
    for i, (a, op, b) in enumerate(problems):
        text = PROMPT.format(a=a, op=op, b=b)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(
            PromptRecord(
                prompt=text, prompt_ids=ids, ground_truth=str(solve(a, op, b)), data_source="toy-arithmetic", index=i
            )
        )
    return out
