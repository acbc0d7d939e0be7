"""Sampling metrics over n samples per problem: avg@n, pass@k, maj@n.

- avg@n: mean accuracy over all n samples of a problem, averaged over problems (DAPO reports
  AIME avg@32);
- pass@k: the probability that k samples drawn without replacement from a problem's n include a
  correct one, estimated without bias from its c correct (Chen et al. 2021,
  1 - C(n-c, k) / C(n, k)) and averaged over problems; "any of the n correct" is only pass@n;
- maj@n: the fraction of problems whose most frequent (normalized) answer is correct; samples
  without an answer do not vote, ties go to the answer seen first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
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
    if k < 1:
        raise ValueError(f"pass@{k}: k must be >= 1")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n samples, c correct); each uses its own n."""
    values = [pass_at_k_estimate(n, c, k) for n, c in counts]
    return sum(values) / len(values) if values else 0.0


def default_pass_k(n: int) -> tuple[int, ...]:
    """The pass@k reported when none is asked for: pass@1 (the expected single-sample accuracy)
    and pass@n (at least one of the n correct)."""
    return (1, n) if n > 1 else (1,)


def group_by_problem(samples: list[SampleResult]) -> dict[int, list[SampleResult]]:
    groups: dict[int, list[SampleResult]] = {}
    for s in samples:
        groups.setdefault(s.problem, []).append(s)
    return groups


def compute_metrics(samples: list[SampleResult], pass_k: Sequence[int] | None = None) -> dict:
    """avg@n / pass@k / maj@n (and length stats) from per-sample results.

    Keys: ``k`` (samples per problem, the n of avg@n and maj@n; the minimum if it varies),
    ``num_problems``, ``num_samples``, ``avg@<n>``, ``maj@<n>``, ``pass@<k>`` for each k of
    ``pass_k`` (default: 1 and n), ``pass_k`` (those k), ``acc`` (= avg@n),
    ``response_length/mean``, ``response_length/clip_frac``. A k above some problem's sample
    count raises ValueError naming k and that count.
    """
    groups = group_by_problem(samples)
    if not groups:
        return {"k": 0, "num_problems": 0, "num_samples": 0, "acc": 0.0}
    k = min(len(g) for g in groups.values())
    ks = sorted(set(pass_k)) if pass_k is not None else list(default_pass_k(k))
    counts = [(len(g), sum(s.acc for s in g)) for g in groups.values()]
    avg = sum(c / n for n, c in counts) / len(groups)
    maj = sum(majority_vote([s.pred for s in g], [s.acc for s in g])[1] for g in groups.values()) / len(groups)
    out: dict = {"k": k, "num_problems": len(groups), "num_samples": len(samples), f"avg@{k}": avg}
    out.update({f"pass@{pk}": mean_pass_at_k(counts, pk) for pk in ks})
    out.update(
        {
            f"maj@{k}": maj,
            "pass_k": ks,
            "acc": avg,
            "response_length/mean": sum(s.length for s in samples) / len(samples),
            "response_length/clip_frac": sum(s.truncated for s in samples) / len(samples),
        }
    )
    return out
