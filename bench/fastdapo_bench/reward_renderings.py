"""The renderings the reward-fidelity bench scores: each ground truth written the ways models answer,
correctly and wrongly, with and without an ``Answer:`` line (verl 0.9.1's ``\\boxed{}`` fallback)."""

from __future__ import annotations

import re

_INT_RE = re.compile(r"-?\d+")
_SENTENCE = "We check the result once more by substituting it back; every condition holds. "
_WORK = _SENTENCE * 6  # ~480 characters: past the 300-character window
KIND_LABELS = {
    "plain": "`Answer: X`",
    "dollar": "`Answer: $X$`",
    "answer_boxed": "`Answer: \\boxed{X}`",
    "trailing_period": "`Answer: X.`",
    "bold_answer": "`**Answer:** X`",
    "unit_listed": "`Answer: X units` (a listed unit word)",
    "unit_other": "`Answer: X apples`",
    "far_from_end": "`Answer: X` followed by ~500 characters",
    "boxed_only": "`$\\boxed{X}$.` without an `Answer:` line",
    "boxed_spaced": "`$\\boxed{ X }$.` without an `Answer:` line",
    "boxed_far": "`$\\boxed{X}$.` followed by ~160 characters, no `Answer:` line",
    "boxed_wrong": "a wrong `$\\boxed{X+1}$.`, no `Answer:` line",
    "wrong_number": "a wrong number (`X+1`)",
    "unevaluated": "unevaluated (`a \\times b`, `\\frac{2X}{2}`; integers)",
}


def _factor(n: int) -> tuple[int, int] | None:
    for a in range(2, int(abs(n) ** 0.5) + 1):
        if n % a == 0:
            return a, n // a
    return None


def renderings(gt: str) -> list[tuple[str, str]]:
    """(kind, response) pairs for one ground truth: correct answers written the ways models write
    them, boxed ones without an ``Answer:`` line (verl 0.9.1's fallback), then wrong ones (a wrong
    number; for integers also unevaluated expressions)."""
    wrong = str(int(gt) + 1) if _INT_RE.fullmatch(gt) else f"{gt}+1"
    out = [
        ("plain", f"Let me work through it.\nAnswer: {gt}"),
        ("dollar", f"Some reasoning.\n\nAnswer: ${gt}$"),
        ("answer_boxed", f"Answer: \\boxed{{{gt}}}"),
        ("trailing_period", f"Answer: {gt}."),
        ("bold_answer", f"**Answer:** {gt}"),
        ("unit_listed", f"Answer: {gt} units"),
        ("unit_other", f"Answer: {gt} apples"),
        ("far_from_end", f"Answer: {gt}\n{_WORK}"),
        ("boxed_only", f"Putting it together, the answer is $\\boxed{{{gt}}}$."),
        ("boxed_spaced", f"Putting it together, the answer is $\\boxed{{ {gt} }}$."),
        ("boxed_far", f"The answer is $\\boxed{{{gt}}}$.\n{_SENTENCE * 2}"),
        ("boxed_wrong", f"Putting it together, the answer is $\\boxed{{{wrong}}}$."),
        ("wrong_number", f"Answer: {wrong}"),
    ]
    if _INT_RE.fullmatch(gt):
        n = int(gt)
        ab = _factor(n)
        out.append(("unevaluated", f"Answer: {ab[0]} \\times {ab[1]}" if ab else f"Answer: {n - 1} + 1"))
        out.append(("unevaluated", f"Answer: \\frac{{{2 * n}}}{{2}}"))
    return out
