"""avg@k / pass@k / maj@k on hand-made cases."""

import pytest

from fastdapo.evaluation.metrics import (
    SampleResult,
    compute_metrics,
    majority_vote,
    pass_at_k_estimate,
)


def _samples(table):
    """table: {problem: [(pred, acc), ...]}"""
    return [
        SampleResult(problem=p, pred=pred, acc=acc, length=10 * (i + 1), truncated=(i == 0))
        for p, rows in table.items()
        for i, (pred, acc) in enumerate(rows)
    ]


def test_avg_pass_maj():
    m = compute_metrics(
        _samples(
            {
                0: [("5", True), ("5", True), ("4", False), ("5", True)],  # 3/4, pass, maj right
                1: [("7", False), ("7", False), ("2", True), ("9", False)],  # 1/4, pass, maj wrong
                2: [("1", False), ("", False), ("3", False), ("3", False)],  # 0/4, no pass, maj wrong
                3: [("x", True), ("x", True), ("x", True), ("x", True)],  # 4/4
            }
        )
    )
    assert m["k"] == 4 and m["num_problems"] == 4 and m["num_samples"] == 16
    assert m["avg@4"] == pytest.approx((0.75 + 0.25 + 0 + 1) / 4)
    assert m["acc"] == m["avg@4"]
    assert m["pass@4"] == pytest.approx(3 / 4)
    assert m["maj@4"] == pytest.approx(2 / 4)
    assert m["response_length/mean"] == pytest.approx(25.0)
    assert m["response_length/clip_frac"] == pytest.approx(4 / 16)


def test_majority_vote_uses_normalized_answers_and_skips_empty():
    # "1/2" written two ways with different spacing counts as one answer
    votes = ["\\frac{1}{2}", "\\frac{1}{ 2}", "3", ""]
    assert majority_vote(votes, [True, True, False, False]) == ("\\frac{1}{2}", True)
    # empty predictions do not vote
    assert majority_vote(["", "", "", "7"], [False, False, False, True]) == ("7", True)
    assert majority_vote(["", ""], [False, False]) == ("", False)
    # ties go to the answer seen first
    assert majority_vote(["4", "5", "5", "4"], [False, True, True, False]) == ("4", False)


def test_single_sample_and_empty():
    m = compute_metrics(_samples({0: [("1", True)], 1: [("2", False)]}))
    assert m["avg@1"] == m["pass@1"] == m["maj@1"] == 0.5
    assert compute_metrics([])["num_problems"] == 0


def test_pass_at_k_estimate():
    assert pass_at_k_estimate(4, 0, 2) == 0.0
    assert pass_at_k_estimate(4, 4, 1) == 1.0
    assert pass_at_k_estimate(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k_estimate(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k_estimate(5, 3, 3) == 1.0  # fewer than 3 wrong
    with pytest.raises(ValueError):
        pass_at_k_estimate(2, 1, 3)
