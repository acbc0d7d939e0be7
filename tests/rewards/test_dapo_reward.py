"""The default ``dapo`` reward: the DAPO reference reward's decisions, rule by rule."""

import json
import time
from pathlib import Path

import pytest

from fastdapo.rewards import RewardResult, dapo_math_reward, math_reward, score_batch
from fastdapo.rewards.dapo_reward import WINDOW_CHARS, dapo_reward, extract_answer_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INTEGER_SETS = ["aime-2024.jsonl", "amc-2023.jsonl", "gsm8k-test-sample.jsonl"]


def _gts(name):
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]
    return [r["reward_model"]["ground_truth"] for r in rows]


@pytest.mark.parametrize(
    "response,gt,acc,pred",
    [
        # ordinary renderings: the reference accepts them
        ("Reasoning...\nAnswer: 204", "204", True, "204"),
        ("Answer: $204$", "204", True, "204"),
        ("Answer: \\boxed{204}", "204", True, "204"),
        ("Answer: $\\boxed{204}$", "204", True, "204"),
        ("answer:204", "204", True, "204"),  # case-insensitive, no space needed
        ("Answer:\n204", "204", True, "204"),  # \s* crosses the newline
        ("Answer: 1,234", "1234", True, "1234"),
        ("Answer: 12 units", "12", True, "12"),  # a listed unit word
        ("Answer: x = 12", "12", True, "12"),
        ("Answer: 1\nmore\nAnswer: 7", "7", True, "7"),  # the last Answer: line wins
        ("Answer: \\frac12", "\\frac{1}{2}", True, "\\frac{1}{2}"),
        # what the reference rejects (and the lenient reward accepted)
        ("Answer: 205", "204", False, "205"),
        ("Answer: 204.", "204", False, "204."),  # no trailing-period rule
        ("**Answer:** 204", "204", False, "**204"),
        ("**Answer: 204**", "204", False, "204**"),
        ("Answer: 204 apples", "204", False, "204apples"),  # unlisted unit word
        ("The answer is $\\boxed{204}$.", "204", False, ""),  # no boxed fallback
        ("no answer", "204", False, ""),
        ("Answer: 0.5", "\\frac{1}{2}", False, "0.5"),  # no equivalence, only strings
        ("Answer: 18.0", "18", False, "18.0"),
        ("Answer: 5 Answer: 6", "6", False, "5Answer:6"),  # one match runs to the line end
        # unevaluated expressions are never an integer
        ("Answer: 12 \\times 17", "204", False, "12\\times17"),
        ("Answer: 200+4", "204", False, "200+4"),
        ("Answer: \\frac{408}{2}", "204", False, "\\frac{408}{2}"),
        ("Answer: 10!", "3628800", False, "10!"),
        ("Answer: \\binom{10}{3}", "120", False, "\\binom{10}{3}"),
        ("Answer: 2^{10}", "1024", False, "2^{10}"),
        ("Answer: 204 or 205", "204", False, "204or205"),
        ("Answer: 204, 205", "204", False, "204205"),  # digit commas dropped
        # deliberate differences from the reference (documented in dapo_reward.py and the README)
        ("Answer: units", "units", False, ""),  # ground truth normalizes to ""
        ("no answer line", "[INVALID]", False, ""),  # the sentinel never matches
        ("Answer: 7", 7, True, "7"),  # integer ground truth via str()
    ],
)
def test_reference_decisions(response, gt, acc, pred):
    res = dapo_math_reward(response, gt)
    assert isinstance(res, RewardResult)
    assert (res.acc, res.pred) == (acc, pred)
    assert res.score == (1.0 if acc else -1.0)


def test_only_the_window_is_seen():
    tail = "\n" + "x" * (WINDOW_CHARS - len("Answer: 204\n"))
    assert dapo_reward("Answer: 204" + tail, "204").acc  # exactly inside the window
    assert not dapo_reward("Answer: 204" + tail + "y", "204").acc  # one character further
    assert extract_answer_line("Answer: 1\n" + "z" * WINDOW_CHARS) is None


@pytest.mark.parametrize("name", INTEGER_SETS)
def test_integer_sets_ordinary_renderings_and_hacks(name):
    responses, gts, want = [], [], []
    for gt in _gts(name):
        n = int(gt)
        for text, ok in [
            (f"Work.\nAnswer: {gt}", True),
            (f"Answer: ${gt}$", True),
            (f"Answer: \\boxed{{{gt}}}", True),
            (f"Answer: {n + 1}", False),
            (f"Answer: {n - 3} + 3", False),
            (f"Answer: \\frac{{{2 * n}}}{{2}}", False),
            (f"Answer: 1 \\times {n}", False),
            (f"Answer: {gt} or {n + 1}", False),
        ]:
            responses.append(text)
            gts.append(gt)
            want.append(ok)
    assert [r.acc for r in score_batch(responses, gts)] == want  # "dapo" is the default


def test_needs_no_worker_and_is_bounded(monkeypatch):
    def boom():
        raise AssertionError("the dapo reward started a worker")

    monkeypatch.setattr(math_reward, "get_pool", boom)
    hostile = [
        "Answer: " + "1" * 1_000_000,
        "Answer:" + " " * 2_000_000,
        "Answer: " + "\\text{" * 100_000,
        "answer " * 300_000,
        "$" * 1_000_000,
        "Answer: " + "frac" * 200_000,
    ]
    t0 = time.monotonic()
    res = score_batch(hostile, ["1"] * len(hostile), reward="dapo")
    assert time.monotonic() - t0 < 1.0
    assert not any(r.acc for r in res)
