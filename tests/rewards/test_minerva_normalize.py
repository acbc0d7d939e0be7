"""The reference (Minerva) normalizer, rule by rule, quirks included."""

import time

import pytest

from fastdapo.rewards.minerva_normalize import normalize_final_answer


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("42", "42"),
        (" 42 ", "42"),
        ("x = 5", "5"),  # text after the last "="
        ("a = b = 7", "7"),
        ("$204$", "204"),
        ("the answer is $204$ and $5$", "204"),  # first $...$ of the line only
        ("$204", "204"),  # a lone "$" is just deleted
        ("1,000", "1000"),  # digits and commas only -> commas go
        ("1,000.5", "1,000.5"),  # ... otherwise they stay
        ("1{,}000", "1000"),
        ("\\$1,000", "1000"),
        ("204.", "204."),  # no trailing-period rule
        ("5 units", "5"),
        ("12 dollars", "12"),
        ("30^\\circ", "30"),
        ("30^{\\circ}", "30"),
        ("10 apples", "10apples"),  # only listed words are removed
        ("\\text{(B)}", "(B)"),
        ("\\textbf{7}", "7"),
        ("\\overline{12}", "12"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # boxed: to the last "}" of the line
        ("\\frac12", "\\frac{1}{2}"),
        ("\\frac1{2}", "\\frac{1}{{}2}"),  # the reference's brace fix, as written
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\sqrt{2}", "\\sqrt{2}"),
        ("\\dfrac{1}{2}", "\\dfrac{1}{2}"),  # no \dfrac -> \frac
        ("a cat", "cat"),  # "a " deleted anywhere
        ("banana split", "banansplit"),  # ... also inside words
        ("\\text{m}", ""),
        ("units", ""),
        ("12 \\times 17", "12\\times17"),
        ("0.5", "0.5"),
        ("²", "²"),  # str.isdigit is unicode-aware
        ("[INVALID]", "[INVALID]"),
    ],
)
def test_normalize_final_answer(raw, expected):
    assert normalize_final_answer(raw) == expected


def test_long_hostile_input_is_linear():
    hostile = ["\\text{" * 50_000 + "\n}", "$" + "x" * 200_000, "frac" * 50_000, "\\boxed{" * 40_000 + "}"]
    t0 = time.monotonic()
    for s in hostile:
        normalize_final_answer(s)
    assert time.monotonic() - t0 < 2.0
