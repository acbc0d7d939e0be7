"""The math_verify reward refuses reward hacks before any equivalence check (no worker needed)."""

import pytest

from fastdapo.rewards import BATCH_REWARD_FUNCTIONS, REWARD_FUNCTIONS, check_reward_name, math_reward, score_batch
from fastdapo.rewards.hack_guard import answer_items, is_number_literal_answer

HACKS = [  # (answer, integer ground truth): unevaluated expressions and hedges
    ("12 \\times 17", "204"),
    ("12 \\cdot 17", "204"),
    ("200+4", "204"),
    ("\\frac{408}{2}", "204"),
    ("408/2", "204"),
    ("10!", "3628800"),
    ("\\binom{10}{3}", "120"),
    ("C(10,3)", "120"),
    ("2^{10}", "1024"),
    ("2**10", "1024"),
    ("\\sqrt{41616}", "204"),
    ("1.02e3", "1020"),
    ("204 or 205", "204"),
    ("204, 205", "204"),
    ("\\{204, 205\\}", "204"),
    ("204 \\text{ or } 205", "204"),
    ("$204$ and $205$", "204"),
    ("\\frac{6}{8}", "0.75"),
    ("0.5 or 0.75", "0.75"),
]
GENUINE = [  # the lenient renderings math_verify keeps
    ("204", "204"),
    ("$204$.", "204"),
    ("204 apples", "204"),
    ("\\boxed{204}", "204"),
    ("204.0", "204"),
    ("1,024", "1024"),
    ("12 \\times 17 = 204", "204"),
    ("\\frac{3}{4}", "0.75"),
    ("0.75", "\\frac{3}{4}"),
    ("4.5 \\times 10^{33}", "4.5e33"),
    ("0.5", "50\\%"),
    ("-7", "-7"),
]


@pytest.fixture
def no_workers(monkeypatch):
    def boom():
        raise AssertionError("decided without a worker was expected")

    monkeypatch.setattr(math_reward, "get_pool", boom)


def test_hacks_refused_and_genuine_kept(no_workers):
    responses = [f"Answer: {a}" for a, _ in HACKS + GENUINE]
    gts = [g for _, g in HACKS + GENUINE]
    accs = [r.acc for r in score_batch(responses, gts, reward="math_verify")]
    assert accs == [False] * len(HACKS) + [True] * len(GENUINE)


def test_hedge_against_a_symbolic_ground_truth_is_refused(no_workers):
    res = score_batch(
        ["Answer: \\frac{\\pi}{2} \\text{ or } \\frac{\\pi}{3}", "Answer: x=1, x=2, x=3"],
        ["\\frac{\\pi}{2}", "1, 2"],
        reward="math_verify",
    )
    assert not any(r.acc for r in res)


@pytest.mark.parametrize(
    "normalized,items",
    [
        ("204", 1),
        ("1,000", 1),
        ("204, 205", 2),
        ("\\{1, 2, 3\\}", 3),
        ("(1, 2)", 1),
        ("[1,3)", 1),
        ("f(x, y) or g(x)", 2),
        ("a; b", 2),
        ("x \\lor y", 1),
    ],
)
def test_answer_items(normalized, items):
    assert answer_items(normalized) == items


def test_literal_rule_only_for_numeric_ground_truths():
    assert is_number_literal_answer("2^{10}", "x^{10}") is None
    assert is_number_literal_answer("\\frac{2}{4}", "\\frac{1}{2}") is None
    assert is_number_literal_answer("204", "204") is True
    assert is_number_literal_answer("\\frac{1}{4}", "0.25") is True


def test_registry_names():
    assert set(REWARD_FUNCTIONS) == set(BATCH_REWARD_FUNCTIONS) == {"dapo", "math_verify"}
    assert score_batch(["Answer: 204."], ["204"])[0].acc is False  # default: dapo
    assert score_batch(["Answer: 204."], ["204"], reward="math_verify")[0].acc is True
    with pytest.raises(ValueError, match="unknown reward 'lenient'; known: dapo, math_verify"):
        check_reward_name("lenient")
    with pytest.raises(ValueError):
        score_batch(["a"], [], reward="dapo")
