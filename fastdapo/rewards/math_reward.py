"""The lenient ``math_verify`` reward: +1 if the final answer is equivalent to the ground truth, else -1.

For sets whose answers are not all integers. The answer is the last ``Answer:`` line of the whole
response (markdown, prose and a ``\\boxed{}`` in it tolerated), else the last ``\\boxed{}``
(``extract.py``), normalized leniently (units, trailing period, ``$``, thousands separators:
``normalize.py``). Order of decisions (first that applies wins):
1. no answer found -> wrong;
2. a refused answer (``hack_guard.py``): not a number literal for a numeric ground truth, or
   more candidates than the ground truth holds -> wrong;
3. identical normalized strings -> right (no parser, no process);
4. both plain numbers (integers, decimals, scientific, integer fractions) -> exact rational
   comparison (two integers must be equal; otherwise relative tolerance 1e-6);
5. otherwise math-verify in a worker process under a hard time limit (timeout -> wrong).
Model text is only scanned with regexes and handed to math-verify's parsers; it is never executed.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from fastdapo.rewards.extract import extract_answer
from fastdapo.rewards.hack_guard import refused
from fastdapo.rewards.normalize import (
    MAX_VERIFY_CHARS,
    answer_key,
    final_value,
    has_percent,
    normalize_answer,
    plain_number,
    to_math_verify,
)
from fastdapo.rewards.result import RewardResult, reward_result
from fastdapo.rewards.verifier import get_pool

DEFAULT_TIMEOUT_S = 5.0
_REL_TOL = Fraction(1, 10**6)


def _close(x: Fraction, y: Fraction, exact: bool) -> bool:
    if x == y:
        return True
    return not exact and abs(x - y) <= _REL_TOL * max(abs(x), abs(y))


def _numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool], a_pct: bool, b_pct: bool) -> bool:
    (x, x_int), (y, y_int) = a, b
    if _close(x, y, x_int and y_int):
        return True
    # "50%" (percent sign stripped in normalization) also matches 0.5, and vice versa
    return (a_pct and _close(x / 100, y, False)) or (b_pct and _close(x, y / 100, False))


def decide_fast(pred: str, gold: str, pred_percent: bool = False, gold_percent: bool = False) -> bool | None:
    """Decision for normalized answers without the symbolic checker, or None if undecided."""
    if not pred:
        return False
    if not gold or refused(pred, gold, gold_percent):
        return False
    pk, gk = answer_key(pred), answer_key(gold)
    if pk == gk or (pk.isalpha() and pk.casefold() == gk.casefold()):
        return True
    pn, gn = plain_number(pk), plain_number(gk)
    if pn is not None and gn is not None:
        return _numbers_equal(pn, gn, pred_percent, gold_percent)
    if len(pred) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
        return False
    return None


# ground truths repeat G times per group and across epochs
_normalize_gold = lru_cache(maxsize=1 << 16)(normalize_answer)


def score_batch_math_verify(
    responses: list[str], ground_truths: list[str], num_workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[RewardResult]:
    """Score many responses; items the fast path cannot decide go to parallel worker processes.

    ``num_workers`` caps the worker processes (default: CPU count, at most 8); each undecided item
    gets at most ``timeout_s`` seconds. No process is involved when every item is decided fast.
    """
    if len(responses) != len(ground_truths):
        raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")
    raw_preds = [extract_answer(r) for r in responses]
    golds = [_normalize_gold(g) for g in ground_truths]
    preds = [normalize_answer(p) for p in raw_preds]
    # "3 \times 4 = 12" -> "12" unless the ground truth is itself an equation
    preds = [p if "=" in g else final_value(p) for p, g in zip(preds, golds)]
    accs: list[bool | None] = [
        decide_fast(p, g, has_percent(rp), has_percent(rg))
        for p, g, rp, rg in zip(preds, golds, raw_preds, ground_truths)
    ]
    undecided = [i for i, a in enumerate(accs) if a is None]
    if undecided:
        pairs = [(to_math_verify(golds[i]), to_math_verify(preds[i])) for i in undecided]
        for i, verdict in zip(undecided, get_pool().check(pairs, timeout_s, num_workers)):
            accs[i] = verdict.ok
    return [reward_result(bool(a), p) for a, p in zip(accs, preds)]


def math_verify_reward(response: str, ground_truth: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> RewardResult:
    """Reward of one response (see module docstring); returns within ``timeout_s`` (+ worker start)."""
    return score_batch_math_verify([response], [ground_truth], num_workers=1, timeout_s=timeout_s)[0]


def warmup(num_workers: int = 1) -> None:
    """Start the equivalence workers ahead of the first batch."""
    get_pool().warmup(num_workers)
