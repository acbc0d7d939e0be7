"""``reward_boxed_fallback`` of the ``dapo`` reward: verl 0.9.1's ``\\boxed{}`` fallback, off by default.

Hand-written cases of verl 0.9.1's ``math_dapo`` rules (nothing vendored): without an ``Answer:`` line the
last ``\\boxed{`` in the last 100 characters, brace-matched, is compared verbatim with the ground truth.
tests/rewards/test_dapo_reward_verl.py checks the same cases against verl's own code when it is cached.
"""

import time

import pytest

from fastdapo.rewards import score_batch
from fastdapo.rewards.dapo_reward import BOX_WINDOW_CHARS, dapo_reward, last_boxed_content

# response, ground truth, acc with the fallback, pred with the fallback (without it: always as before)
CASES = [
    ("The answer is $\\boxed{204}$.", "204", True, "204"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", True, "\\frac{1}{2}"),  # nested braces matched
    ("first \\boxed{1} then \\boxed{2}", "2", True, "2"),  # the last box
    ("first \\boxed{1} then \\boxed{2}", "1", False, "2"),
    ("\\boxed{205}", "204", False, "205"),
    ("\\boxed{ 204 }", "204", False, " 204 "),  # verbatim: no normalization, no strip
    ("\\boxed{204.}", "204", False, "204."),
    ("\\boxed{0.5}", "\\frac{1}{2}", False, "0.5"),
    ("\\boxed{12 \\times 17}", "204", False, "12 \\times 17"),
    ("\\boxed{units}", "units", True, "units"),  # verbatim: a ground truth normalizing to "" is fine here
    ("\\boxed{}", "", False, ""),  # but a blank one is never matched
    ("\\boxed{ }", " ", False, " "),
    ("\\boxed{204}", 204, True, "204"),  # integer ground truth via str()
]


@pytest.mark.parametrize("response,gt,acc,pred", CASES)
def test_fallback_on(response, gt, acc, pred):
    res = dapo_reward(response, gt, reward_boxed_fallback=True)
    assert (res.acc, res.pred, res.score) == (acc, pred, 1.0 if acc else -1.0)


@pytest.mark.parametrize("response,gt,acc,pred", CASES)
def test_fallback_off_by_default(response, gt, acc, pred):
    assert (dapo_reward(response, gt).acc, dapo_reward(response, gt).pred) == (False, "")


@pytest.mark.parametrize(
    "response,gt,acc,pred",
    [
        ("Answer: 205\nso \\boxed{204}", "204", False, "205"),  # an Answer: line wins over any box
        ("Answer: 204.\n\\boxed{204}", "204", False, "204."),
        ("Answer: \\boxed{204}", "204", True, "204"),
    ],
)
def test_answer_line_comes_first(response, gt, acc, pred):
    for on in (False, True):
        res = dapo_reward(response, gt, reward_boxed_fallback=on)
        assert (res.acc, res.pred) == (acc, pred)


def test_only_the_last_100_characters_hold_the_box():
    box = "\\boxed{204}"
    inside = box + "x" * (BOX_WINDOW_CHARS - len(box))
    assert dapo_reward(inside, "204", reward_boxed_fallback=True).acc
    assert not dapo_reward("x" + box + "x" * (BOX_WINDOW_CHARS - len(box) + 1), "204", reward_boxed_fallback=True).acc
    assert last_boxed_content(inside + "y") is None  # its start left the window


@pytest.mark.parametrize(
    "response", ["\\boxed{204", "\\boxed {204}", "\\fbox{204}", "\\boxed204", "no box", "", "\\boxed{{204}"]
)
def test_no_complete_box_is_wrong_with_empty_pred(response):
    res = dapo_reward(response, "204", reward_boxed_fallback=True)
    assert (res.acc, res.pred) == (False, "")


def test_batch_scorer_passes_the_switch():
    responses, gts = ["\\boxed{7}", "Answer: 7"], ["7", "7"]
    assert [r.acc for r in score_batch(responses, gts)] == [False, True]
    assert [r.acc for r in score_batch(responses, gts, reward_boxed_fallback=True)] == [True, True]
    with pytest.raises(ValueError, match="^reward_boxed_fallback applies to the dapo reward only, not 'math_verify'$"):
        score_batch(responses, gts, reward="math_verify", reward_boxed_fallback=True)


def test_hostile_boxes_stay_fast():
    hostile = ["\\boxed{" * 20_000, "{" * 50_000 + "\\boxed{" + "}" * 50_000, "\\boxed{" + "{}" * 100_000]
    t0 = time.perf_counter()
    res = score_batch(hostile, ["1"] * len(hostile), reward_boxed_fallback=True)
    assert time.perf_counter() - t0 < 1.0 and not any(r.acc for r in res)
