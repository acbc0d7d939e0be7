"""The DAPO prompt template applied to raw problems."""

from __future__ import annotations

DAPO_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the "
    "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


def apply_dapo_template(problem: str) -> str:
    return DAPO_TEMPLATE.format(problem=problem.strip())
