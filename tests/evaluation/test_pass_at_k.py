"""pass@k is the unbiased estimator (Chen et al. 2021), not "any of the n samples correct"."""

import itertools
import random

import pytest

from fastdapo.evaluation.metrics import SampleResult, compute_metrics, mean_pass_at_k, pass_at_k_estimate


def _brute_force(accs: list[bool], k: int) -> float:
    """Oracle: the fraction of all k-subsets of the samples that hold a correct one."""
    subsets = list(itertools.combinations(accs, k))
    return sum(any(s) for s in subsets) / len(subsets)


def _samples(accs_by_problem: list[list[bool]]) -> list[SampleResult]:
    return [
        SampleResult(problem=p, pred="1" if acc else "2", acc=acc)
        for p, accs in enumerate(accs_by_problem)
        for acc in accs
    ]


@pytest.mark.parametrize("n", range(1, 8))
def test_estimate_matches_enumeration_over_k_subsets(n):
    for c in range(n + 1):
        accs = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k_estimate(n, c, k) == pytest.approx(_brute_force(accs, k)), (n, c, k)


def test_one_correct_of_four():
    m = compute_metrics(_samples([[False, True, False, False]]), pass_k=[4, 1, 2])
    assert (m["pass@1"], m["pass@2"], m["pass@4"]) == pytest.approx((0.25, 0.5, 1.0))
    assert m["pass_k"] == [1, 2, 4] and m["avg@4"] == pytest.approx(0.25) and m["maj@4"] == 0.0


def test_default_k_is_1_and_n_and_pass_at_1_is_the_mean_accuracy():
    m = compute_metrics(_samples([[True, False, False, False], [True, True, False, True], [False] * 4]))
    assert m["pass_k"] == [1, 4] and {"pass@1", "pass@4"} <= set(m) and "pass@2" not in m
    assert m["pass@1"] == pytest.approx(m["avg@4"]) == pytest.approx((0.25 + 0.75 + 0) / 3)
    assert m["pass@4"] == pytest.approx(2 / 3)  # k = n: at least one of the n correct
    assert compute_metrics(_samples([[True], [False]]))["pass_k"] == [1]


def test_summary_averages_the_per_problem_oracle():
    rng = random.Random(0)
    problems = [[rng.random() < 0.3 for _ in range(6)] for _ in range(20)]
    m = compute_metrics(_samples(problems), pass_k=range(1, 7))
    for k in range(1, 7):
        expected = sum(_brute_force(accs, k) for accs in problems) / len(problems)
        assert m[f"pass@{k}"] == pytest.approx(expected), k


def test_each_problem_uses_its_own_sample_count():
    # 1 of 4 correct, and 1 of 2 correct: pass@2 = (1 - C(3,2)/C(4,2) + 1) / 2
    m = compute_metrics(_samples([[True, False, False, False], [False, True]]), pass_k=[1, 2])
    assert m["k"] == 2 and m["pass@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["pass@1"] == pytest.approx((0.25 + 0.5) / 2)
    assert mean_pass_at_k([(4, 1), (2, 1)], 2) == m["pass@2"]


def test_k_above_a_problems_sample_count_names_k_and_n():
    with pytest.raises(ValueError, match=r"pass@3 .*n=2"):
        compute_metrics(_samples([[True, False, False, False], [False, True]]), pass_k=[3])
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k_estimate(4, 1, 0)
