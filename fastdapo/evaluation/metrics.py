"""Sampling metrics over k samples per problem: avg@k, pass@k, maj@k.

- avg@k: mean accuracy over all k samples of a problem, averaged over problems (DAPO reports
  AIME avg@32);
- pass@k: the fraction of problems with at least one correct sample;
- maj@k: the fraction of problems whose most frequent (normalized) answer is correct; samples
  without an answer do not vote, ties go to the answer seen first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from fastdapo.rewards.normalize import answer_key


@dataclass
class SampleResult:
    problem: int  # problem id (samples of one problem share it)
    pred: str  # normalized predicted answer ("" when none)
    acc: bool
    length: int = 0  # response length in tokens
    truncated: bool = False


def majority_vote(preds: list[str], accs: list[bool]) -> tuple[str, bool]:
    """The most frequent non-empty answer (first seen wins ties) and whether it is correct."""
    keys = [answer_key(p) for p in preds]
    counts = Counter(k for k in keys if k)
    if not counts:
        return "", False
    best = max(counts.values())
    for key, pred, acc in zip(keys, preds, accs):
        if key and counts[key] == best:
            return pred, acc
    return "", False  # unreachable


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (k <= n): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def group_by_problem(samples: list[SampleResult]) -> dict[int, list[SampleResult]]:
    groups: dict[int, list[SampleResult]] = {}
    for s in samples:
        groups.setdefault(s.problem, []).append(s)
    return groups


def compute_metrics(samples: list[SampleResult]) -> dict:
    """avg@k / pass@k / maj@k (and length stats) from per-sample results.

    Keys: ``k`` (samples per problem; the minimum if it varies), ``num_problems``,
    ``num_samples``, ``avg@k``, ``pass@k``, ``maj@k`` with the literal k (e.g. ``avg@32``),
    ``acc`` (= avg@k), ``response_length/mean``, ``response_length/clip_frac``.
    """
    groups = group_by_problem(samples)
    if not groups:
        return {"k": 0, "num_problems": 0, "num_samples": 0, "acc": 0.0}
    k = min(len(g) for g in groups.values())
    avg = sum(sum(s.acc for s in g) / len(g) for g in groups.values()) / len(groups)
    pas = sum(any(s.acc for s in g) for g in groups.values()) / len(groups)
    maj = sum(majority_vote([s.pred for s in g], [s.acc for s in g])[1] for g in groups.values()) / len(groups)
    return {
        "k": k,
        "num_problems": len(groups),
        "num_samples": len(samples),
        f"avg@{k}": avg,
        f"pass@{k}": pas,
        f"maj@{k}": maj,
        "acc": avg,
        "response_length/mean": sum(s.length for s in samples) / len(samples),
        "response_length/clip_frac": sum(s.truncated for s in samples) / len(samples),
    }
