"""Sizes of the built-in toy task and model, importable without torch (config validation uses them)."""

from __future__ import annotations

PROMPT = "What is {a}{op}{b}? End with Answer: N\n"
MAX_POSITIONS = 512  # the toy model's context; prompt + response must fit


def num_problems(max_operand: int) -> int:
    return 2 * (max_operand + 1) ** 2


def longest_prompt(max_operand: int) -> int:
    """Tokens of the longest toy prompt (the character tokenizer: one token per character)."""
    return len(PROMPT.format(a=max_operand, op="-", b=max_operand))
