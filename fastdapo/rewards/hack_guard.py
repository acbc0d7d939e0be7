"""Answers the lenient ``math_verify`` reward refuses before any equivalence check.

Two reward hacks a symbolic checker would otherwise pay for:

- Leaving the arithmetic to the verifier: when the ground truth is written as a number (integer,
  decimal or scientific notation), the answer must itself be a number literal. For an integer ground
  truth only an integer (``204``, ``204.0``) is accepted, so ``12 \\times 17``, ``10!``,
  ``\\binom{10}{3}``, ``2^{10}``, ``\\frac{408}{2}`` and ``200+4`` are wrong for 204. For a
  non-integer ground truth (``0.75``, ``4.5e33``) a decimal, scientific notation or a fraction in
  lowest terms (``\\frac{3}{4}``) is a literal; ``\\frac{6}{8}`` is not.
- Hedging: an answer listing more candidates than the ground truth has items (``204 or 205``,
  ``\\{204, 205\\}``, ``\\frac12, \\frac13`` for one value) is wrong. Items are split at top-level
  commas and semicolons (not thousands separators) and the words ``or`` / ``and``.

Both work on normalized answers (``normalize.normalize_answer``) with linear scans only.
"""

from __future__ import annotations

import re
from math import gcd

from fastdapo.rewards.normalize import answer_key, plain_number

_INT_RE = re.compile(r"[-+]?\d+")
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,6})?")
_INT_LIKE_RE = re.compile(r"[-+]?\d+(?:\.0*)?")
_FRACTION_RE = re.compile(r"[-+]?(?:\\frac\{-?(\d+)\}\{(\d+)\}|(\d+)/(\d+))")
_SEPARATOR_RE = re.compile(r"(?<!\d),|,(?!\d{3}(?!\d))|;|\bor\b|\band\b")
_OPEN, _CLOSE = "([{", ")]}"


def is_number_literal_answer(pred_key: str, gold_key: str, gold_percent: bool = False) -> bool | None:
    """For a ground truth written as a number (integer, decimal, scientific): is the answer a number
    literal? None: the ground truth is something else (a fraction, an expression; no restriction)."""
    if not _NUMBER_RE.fullmatch(gold_key):
        return None
    if _INT_RE.fullmatch(gold_key) and not gold_percent:  # "50\\%" may be answered 0.5
        return bool(_INT_LIKE_RE.fullmatch(pred_key))
    if plain_number(pred_key) is None:
        return False
    frac = _FRACTION_RE.fullmatch(pred_key)
    if frac:
        num, den = (int(g) for g in (frac.group(1, 2) if frac.group(1) is not None else frac.group(3, 4)))
        return den > 1 and gcd(num, den) == 1
    return True


def _top_level(s: str) -> str:
    """``s`` with everything inside brackets blanked out (any bracket kind closes any other)."""
    out = []
    depth = 0
    for c in s:
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        out.append(c if depth == 0 and c not in _CLOSE else " ")
    return "".join(out)


def answer_items(normalized: str) -> int:
    """How many candidates a normalized answer lists (an outer ``\\{...\\}`` set is opened)."""
    s = normalized.strip()
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    return 1 + len(_SEPARATOR_RE.findall(_top_level(s)))


def is_hedged(pred: str, gold: str) -> bool:
    """The answer lists more candidates than the ground truth holds."""
    return answer_items(pred) > answer_items(gold)


def refused(pred: str, gold: str, gold_percent: bool = False) -> bool:
    """Normalized answer ``pred`` is wrong for ``gold`` whatever an equivalence check would say
    (``gold_percent``: the ground truth carried a percent sign, stripped in normalization)."""
    literal = is_number_literal_answer(answer_key(pred), answer_key(gold), gold_percent)
    if literal is not None:
        return not literal
    return is_hedged(pred, gold)
