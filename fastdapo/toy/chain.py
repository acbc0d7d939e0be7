"""The chain task: long, variable-length worked responses for the toy model.

A problem repeats one step a given number of times, e.g. "Start at 13 and add 9, 3 times."; the reference
response works every step on its own line, counting the steps down, then gives the answer:

    3: 13+9=22
    2: 22+9=31
    1: 31+9=40
    Answer: 40

2..chain_max_steps lines make responses of 32 to ~190 tokens (16 steps), so a response length limit can bind
for the longest chains, and accuracy falls with length (every line is a chance to slip): short chains give
all-correct groups, long ones all-wrong groups, which is what DAPO's dynamic sampling, token-level loss and
overlong shaping are about.
"""

from __future__ import annotations

import random
from itertools import zip_longest
from typing import NamedTuple

from fastdapo.data.records import PromptRecord
from fastdapo.toy.spec import CHAIN_MIN_STEPS, CHAIN_PROMPT, CHAIN_SLIPS, CHAIN_TOTALS, CHAIN_VERBS, iter_chains


class Chain(NamedTuple):
    op: str  # "+" or "-"
    start: int
    step: int
    steps: int

    def totals(self) -> list[int]:
        sign = 1 if self.op == "+" else -1
        return [self.start + sign * self.step * i for i in range(self.steps + 1)]


def all_chains(max_steps: int) -> dict[int, list[Chain]]:
    """Every problem of 2..max_steps steps, by step count."""
    out: dict[int, list[Chain]] = {k: [] for k in range(CHAIN_MIN_STEPS, max_steps + 1)}
    for problem in iter_chains(max_steps):
        c = Chain(*problem)
        out[c.steps].append(c)
    return out


def chain_problems(count: int, max_steps: int, seed: int = 1234) -> list[Chain]:
    """`count` distinct problems, as even over the step counts as the problem space allows, in an order fixed
    by the seed (not the run seed)."""
    rng = random.Random(seed)
    by_steps = list(all_chains(max_steps).values())
    for group in by_steps:
        rng.shuffle(group)
    # round robin over step counts: long chains are fewer (small steps only); short ones fill the rest
    picked = [c for row in zip_longest(*by_steps) for c in row if c is not None][:count]
    if len(picked) < count:
        raise ValueError(f"toy.chain_problems: {count} exceeds the {len(picked)} chains of at most {max_steps} steps")
    rng.shuffle(picked)
    return picked


def chain_splits(count: int, max_steps: int, eval_size: int, seed: int = 1234) -> tuple[list[Chain], list[Chain]]:
    """Disjoint (train, eval) lists of problems, like `task.toy_splits`."""
    if eval_size >= count:
        raise ValueError(f"toy.eval_size {eval_size} leaves no training problems (toy.chain_problems {count})")
    probs = chain_problems(count, max_steps, seed)
    return probs[eval_size:], probs[:eval_size]


def chain_prompt(c: Chain) -> str:
    return CHAIN_PROMPT.format(start=c.start, verb=CHAIN_VERBS[c.op], step=c.step, steps=c.steps)


def solve_chain(c: Chain) -> int:
    return c.totals()[-1]


def chain_response(c: Chain, slip_line: int = -1, slip: int = 0, answer_line: bool = True) -> str:
    """The worked response; `slip` is added to the result of line `slip_line` (0-based) and carried on."""
    totals, carried, lines = c.totals(), 0, []
    for i, (a, b) in enumerate(zip(totals, totals[1:])):
        before = a + carried
        carried += slip if i == slip_line else 0
        lines.append(f"{c.steps - i}: {before}{c.op}{c.step}={b + carried}")
    total = totals[-1] + carried
    lines.append(f"Answer: {total}" if answer_line else f"The answer is {total}.")
    return "\n".join(lines)


def reference_chain_response(c: Chain) -> str:
    return chain_response(c)


def chain_demo(c: Chain, rng: random.Random, noise: float, format_noise: float) -> tuple[str, str]:
    """A warm-start (prompt, response) from a sloppy teacher: with probability `noise` one line's result is off
    by 1-2 and carried on, with probability `format_noise` the answer line is the wrong one."""
    slip_line, slip = -1, 0
    if rng.random() < noise:
        slip_line, slip = rng.randrange(c.steps), rng.choice(CHAIN_SLIPS)
        after = c.totals()[slip_line + 1 :]
        if not CHAIN_TOTALS[0] <= min(after) + slip <= max(after) + slip <= CHAIN_TOTALS[1]:
            slip = -slip  # keeps every total at two digits (the other sign does: totals move away from the start)
    return chain_prompt(c), chain_response(c, slip_line, slip, answer_line=rng.random() >= format_noise)


def chain_records(problems: list[Chain], tokenizer) -> list[PromptRecord]:
    out = []
    for i, c in enumerate(problems):
        text = chain_prompt(c)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(
            PromptRecord(
                prompt=text,
                prompt_ids=ids,
                ground_truth=str(solve_chain(c)),
                data_source="toy-chain",
                index=i,
                extra={"steps": c.steps},
            )
        )
    return out
