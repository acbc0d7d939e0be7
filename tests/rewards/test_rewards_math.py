"""The lenient math_verify reward on real reference answers, rendered the way models write them."""

import json
import threading
from pathlib import Path

import pytest

from fastdapo.rewards import RewardResult, math_reward, warmup
from fastdapo.rewards.math_reward import math_verify_reward
from fastdapo.rewards.math_reward import score_batch_math_verify as score_batch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _rows(name):
    return [json.loads(l) for l in (FIXTURES / name).read_text().splitlines() if l.strip()]


def _gts(name):
    return [r["reward_model"]["ground_truth"].strip() for r in _rows(name)]


@pytest.fixture(scope="module", autouse=True)
def _warm():
    warmup(1)


def _integer_renderings(gt):
    n = int(gt)
    out = [
        f"Reasoning...\nAnswer: {gt}",
        f"Answer: ${gt}$",
        f"Answer: {gt}.",
        f"Answer: ${gt}$.",
        f"Answer: {gt} apples",
        f"**Answer:** {gt}",
        f"Answer: \\boxed{{{gt}}}",
        f"We conclude $\\boxed{{{gt}}}$.",
    ]
    if abs(n) >= 1000:
        out += [f"Answer: {n:,}", f"Answer: ${n:,}$".replace(",", "{,}"), f"Answer: \\${n:,}"]
    return out


@pytest.mark.parametrize("name", ["aime-2024.jsonl", "amc-2023.jsonl", "gsm8k-test-sample.jsonl"])
def test_integer_answers_accepted_and_perturbed_rejected(name):
    gts = _gts(name)
    responses, truths = [], []
    for gt in gts:
        for text in _integer_renderings(gt):
            responses.append(text)
            truths.append(gt)
    results = score_batch(responses, truths)
    bad = [(r, t, res.pred) for r, t, res in zip(responses, truths, results) if not res.acc]
    assert not bad
    assert all(res.score == 1.0 for res in results)
    wrong = score_batch([f"Answer: {int(gt) + 1}" for gt in gts] + [f"Answer: {gt}0" for gt in gts], gts + gts)
    assert not any(r.acc for r in wrong)
    assert all(r.score == -1.0 for r in wrong)


def test_minerva_reference_solutions_accepted():
    rows = _rows("minerva-math-sample.jsonl")
    sols = [r["solution"] for r in rows]
    gts = [r["reward_model"]["ground_truth"] for r in rows]
    results = score_batch(sols, gts)
    assert [r.acc for r in results] == [True] * len(rows)
    # the same ground truths as DAPO-style answer lines
    results = score_batch([f"...\nAnswer: ${g.strip()}$" for g in gts], gts)
    assert all(r.acc for r in results)


def test_minerva_perturbed_rejected():
    rows = _rows("minerva-math-sample.jsonl")[:40]
    gts = [r["reward_model"]["ground_truth"].strip() for r in rows]
    results = score_batch([f"Answer: ${g}+1$" for g in gts], gts, timeout_s=3.0)
    assert not any(r.acc for r in results)


@pytest.mark.parametrize(
    "response,gt",
    [
        ("Answer: 0.5", "\\frac{1}{2}"),
        ("Answer: \\dfrac{3}{4}", "0.75"),
        ("Answer: 1/2", "\\frac12"),
        ("Answer: \\sqrt{12}", "2\\sqrt{3}"),
        ("Answer: [1, 3)", "[1,3)"),
        ("Answer: 4.5 \\times 10^{33}", "4.5e33"),
        ("Answer: -\\frac{1}{3}", "-1./3"),
        ("Answer: \\frac{\\pi}{2}", "\\pi/2"),
        ("Answer: $x = 3$", "3"),
        ("Answer: 18.0", "18"),
        ("Answer: $\\{2, 1\\}$", "\\{1,2\\}"),
    ],
)
def test_equivalent_forms(response, gt):
    res = math_verify_reward(response, gt)
    assert isinstance(res, RewardResult)
    assert res.acc and res.score == 1.0


@pytest.mark.parametrize(
    "response,gt",
    [
        ("Answer: (1, 3]", "[1,3)"),
        ("Answer: 0.51", "\\frac{1}{2}"),
        ("Answer: 2\\sqrt{2}", "2\\sqrt{3}"),
        ("Answer: 20.4", "20.39"),
        ("no final answer at all", "5"),
        ("Answer:", "5"),
    ],
)
def test_non_equivalent_forms(response, gt):
    res = math_verify_reward(response, gt)
    assert not res.acc and res.score == -1.0


def test_pred_is_normalized_answer():
    assert math_verify_reward("Answer: $1{,}000$ dollars.", "1000").pred == "1000"
    assert math_verify_reward("nothing", "1").pred == ""


def test_fast_path_needs_no_worker(monkeypatch):
    def boom():
        raise AssertionError("worker pool used for a fast-path batch")

    monkeypatch.setattr(math_reward, "get_pool", boom)
    res = score_batch(["Answer: 12", "Answer: 13", "\\boxed{7}", "none", "Answer: 2.50"], ["12", "12", "7", "1", "2.5"])
    assert [r.acc for r in res] == [True, False, True, False, True]


def test_length_mismatch_rejected():
    with pytest.raises(ValueError):
        score_batch(["a"], [])


def test_thread_safe():
    pairs = [
        ("Answer: 0.5", "\\frac{1}{2}", True),
        ("Answer: \\frac{2}{3}", "0.6", False),
        ("Answer: \\sqrt{8}", "2\\sqrt{2}", True),
    ] * 2
    errors = []

    def work(resp, gt, want):
        try:
            if math_verify_reward(resp, gt).acc != want:
                errors.append((resp, gt))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=p) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


@pytest.mark.parametrize(
    "response,gt,want",
    [
        ("Answer: 3 \\times 4 = 12", "12", True),  # final value of a worked equation
        ("Answer: $x^2 + y^2 = 1$", "x^2+y^2=1", True),  # equations compared as equations
        ("Answer: 50\\%", "0.5", True),
        ("Answer: 0.5", "50\\%", True),
        ("Answer: 50\\%", "50", True),
        ("Answer: 40\\%", "0.5", False),
        ("Answer: 1 million", "1", False),  # number words are not units
        ("Answer: Yes", "yes", True),
    ],
)
def test_answer_forms(response, gt, want):
    assert math_verify_reward(response, gt).acc is want
