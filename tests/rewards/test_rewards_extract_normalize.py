"""Answer extraction and normalization: pure string code, no worker processes."""

import pytest

from fastdapo.rewards.extract import extract_answer, last_boxed
from fastdapo.rewards.normalize import answer_key, normalize_answer, plain_number, to_math_verify


@pytest.mark.parametrize(
    "response,expected",
    [
        ("work\nAnswer: 42", "42"),
        ("Answer: 1\nmore thinking\nAnswer: 7", "7"),  # the last Answer: line wins
        ("**Answer:** 18", "18"),
        ("Final answer: $\\frac{1}{2}$", "$\\frac{1}{2}$"),  # delimiters go in normalization
        ("Answer:\n\n$204$", "$204$"),  # answer on the next line
        ("Answer: The number of minutes is $204$.", "204"),
        ("Answer: \\boxed{x^2+1}", "x^2+1"),
        ("so $\\boxed{\\frac{a}{\\sqrt{b}}}$ done", "\\frac{a}{\\sqrt{b}}"),  # boxed fallback, nested
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed 5 is it", "5"),
        ("no answer here", None),
        ("", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_last_boxed_escaped_braces():
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("$18$", "18"),
        ("\\$18.", "18"),
        ("1,000", "1000"),
        ("1{,}000", "1000"),
        ("1\\,000", "1000"),
        ("18 dollars", "18"),
        ("1.6 \\mathrm{~cm}", "1.6"),
        ("5\\text{ meters}", "5"),
        ("30^\\circ", "30"),
        ("30^{\\circ}", "30"),
        ("50\\%", "50"),
        ("+7", "7"),
        ("x = 5", "5"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right)", "( 1, 2 )"),
        ("\\text{(B)}", "B"),
        ("np.arcsin(10/13)", "\\arcsin(10/13)"),
        ("-1./3", "-1/3"),
        ("2 \\pi", "2 \\pi"),
        ("3 pi", "3 pi"),  # math words are not units
        ("x=1, y=2", "x=1, y=2"),  # systems are left alone
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_answer_key_ignores_spacing():
    assert answer_key(normalize_answer("\\frac{1}{ 2 }")) == answer_key(normalize_answer("\\frac{1}{2}"))


def test_plain_number():
    assert plain_number("18")[0] == plain_number("18.0")[0]
    assert plain_number("18")[1] is True and plain_number("18.0")[1] is False
    assert plain_number("4.5e33")[0] == plain_number("4.5\\times10^{33}")[0]
    assert plain_number("1e999999") is None  # no huge integer built: left to the checker
    assert plain_number("\\frac{3}{4}")[0] == plain_number("0.75")[0] == -plain_number("-3/4")[0]
    assert plain_number("-\\frac{3}{4}")[0] == plain_number("\\frac{-3}{4}")[0] < 0
    assert plain_number("1/0") is None
    assert plain_number("x+1") is None
    assert plain_number("1" * 500) is None


def test_to_math_verify_spells_out_scientific_notation():
    assert to_math_verify("4.5e33") == "$4.5\\times 10^{33}$"
    assert to_math_verify("e^{2}") == "$e^{2}$"
