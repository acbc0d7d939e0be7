"""The math_verify reward returns within its time limit on hostile input and never raises."""

import time

import pytest

from fastdapo.rewards import warmup
from fastdapo.rewards.math_reward import math_verify_reward
from fastdapo.rewards.math_reward import score_batch_math_verify as score_batch
from fastdapo.rewards.verifier import get_pool

LIMIT = 1.0
SLACK = 1.0  # process scheduling on a loaded machine

ADVERSARIAL = [
    "Answer: 10^{10^{10^{10}}}",
    "Answer: 9^{9^{9^{9^{9}}}}",
    "Answer: e^{e^{e^{e^{100}}}}",
    "Answer: (10^{10^{10}})!",
]
CHEAP = [
    "Answer: " + "1" * 1_000_000,  # megabyte number
    "x" * 3_000_000 + "\nAnswer: 5",  # megabyte response
    "\\boxed{" * 100_000,  # unbalanced, repeated
    "Answer: " + "\\frac{" * 400 + "1" + "}{2}" * 400,  # deeply nested LaTeX
    "Answer: " + "(" * 5000 + "1" + ")" * 5000,
    "Answer: " + "1+" * 200_000 + "1",
    "Answer: 10**10**10",
    "Answer: __import__('os').system('echo pwned')",
]


@pytest.fixture(scope="module", autouse=True)
def _warm():
    warmup(1)


@pytest.mark.parametrize("response", ADVERSARIAL + CHEAP)
def test_returns_within_limit(response):
    t0 = time.monotonic()
    res = math_verify_reward(response, "\\frac{1}{2}", timeout_s=LIMIT)
    assert time.monotonic() - t0 < LIMIT + SLACK
    assert not res.acc and res.score == -1.0


def test_batch_with_adversarial_items_is_bounded_and_still_correct():
    responses = [
        "Answer: 0.5",
        "Answer: 2^{2^{2^{2^{2^{2^{2}}}}}} - 7",
        "Answer: \\frac{2}{4}",
        "Answer: 9^{9^{9^{9^{8}}}}",
    ]
    t0 = time.monotonic()
    res = score_batch(responses, ["\\frac{1}{2}"] * 4, num_workers=2, timeout_s=LIMIT)
    # two overruns on two workers in parallel, plus the quick items
    assert time.monotonic() - t0 < 2 * LIMIT + 2 * SLACK
    assert [r.acc for r in res] == [True, False, True, False]
    # the pool recovered: a normal check still works right after the kills
    assert math_verify_reward("Answer: \\dfrac{1}{2}", "0.5").acc
    assert get_pool().stats["timeouts"] >= 2


def test_recovers_from_a_dead_worker():
    pool = get_pool()
    warmup(1)
    for w in list(pool._idle):
        w.proc.kill()
        w.proc.wait()
    assert math_verify_reward("Answer: \\frac{3}{4}", "0.75").acc
