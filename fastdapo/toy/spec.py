"""Sizes of the built-in toy tasks and model, importable without torch (config validation uses them)."""

from __future__ import annotations

PROMPT = "What is {a}{op}{b}? End with Answer: N\n"
MAX_POSITIONS = 512  # the toy model's context; prompt + response must fit

# The chain task: repeat one step (add or subtract a digit) a given number of times. The worked response counts
# the steps down ("3: 37+4=41"), so every decision is local to the line before it (the next label, the next
# total, and stopping after label 1): a tiny model learns it in minutes, and the number of lines
# (2..chain_max_steps) sets the response length. Totals keep two digits, so line widths vary only with labels.
CHAIN_PROMPT = "Start at {start} and {verb} {step}, {steps} times. End with Answer: N\n"
CHAIN_VERBS = {"+": "add", "-": "subtract"}
CHAIN_TOTALS = (10, 99)  # every total of a problem lies here, and every slipped one
CHAIN_STEP_SIZES = range(2, 10)
CHAIN_MIN_STEPS = 2
CHAIN_MOST_STEPS = (CHAIN_TOTALS[1] - CHAIN_TOTALS[0]) // CHAIN_STEP_SIZES[0]  # 44: adding 2 from 10
CHAIN_SLIPS = (-2, -1, 1, 2)  # a warm-start slip puts one total off by this (carried on)


def num_problems(max_operand: int) -> int:
    return 2 * (max_operand + 1) ** 2


def longest_prompt(max_operand: int) -> int:
    """Tokens of the longest toy prompt (the character tokenizer: one token per character)."""
    return len(PROMPT.format(a=max_operand, op="-", b=max_operand))


def iter_chains(max_steps: int):
    """Every chain problem (op, start, step, steps) of 2..max_steps steps."""
    lo, hi = CHAIN_TOTALS
    for op in CHAIN_VERBS:
        for start in range(lo, hi + 1):
            for step in CHAIN_STEP_SIZES:
                for steps in range(CHAIN_MIN_STEPS, max_steps + 1):
                    if not lo <= start + (steps if op == "+" else -steps) * step <= hi:
                        break
                    yield op, start, step, steps


def chain_space(max_steps: int) -> int:
    return sum(1 for _ in iter_chains(max_steps))


def chain_longest_prompt(max_steps: int) -> int:
    return len(CHAIN_PROMPT.format(start=99, verb="subtract", step=9, steps=max_steps))


def chain_response_length(steps: int, answer_line: bool = True) -> int:
    """Tokens of a worked response of `steps` lines (exact: every total has two digits): the lines
    "L: AA+d=BB" and their newlines, then the answer."""
    labels = sum(len(str(i)) for i in range(1, steps + 1))
    return steps * 10 + labels + len("Answer: 99" if answer_line else "The answer is 99.")


def chain_positions(max_steps: int) -> int:
    """Positions a warm-start sequence of the chain task may need: prompt, the longer ending, end of sequence."""
    return chain_longest_prompt(max_steps) + chain_response_length(max_steps, answer_line=False) + 1


def task_longest_prompt(task: str, max_operand: int, chain_max_steps: int) -> int:
    return chain_longest_prompt(chain_max_steps) if task == "chain" else longest_prompt(max_operand)
