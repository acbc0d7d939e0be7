"""Answer normalization: the cheap, deterministic half of answer checking.

``normalize_answer`` turns an answer as models write it ("$1{,}000$ dollars.", "x = \\dfrac12",
"30^\\circ") into a canonical LaTeX-ish form; ``answer_key`` removes whitespace for string
equality; ``plain_number`` reads plain numeric literals and integer fractions exactly so that the common
cases are decided without any parser. Pure regex/string code, bounded by length caps.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Answers longer than this are never handed to the symbolic checker (string compare only).
MAX_VERIFY_CHARS = 512
_MAX_NORMALIZE_CHARS = 4_096

_TEXT_CMDS = r"(?:text|textrm|textnormal|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)"
# one level of nested braces inside a \text{...} group
_GROUP = r"\{(?:[^{}]|\{[^{}]*\})*\}"
_TRAILING_TEXT_RE = re.compile(rf"(?<=[\d}})\]|])\s*\\{_TEXT_CMDS}\s*{_GROUP}(?:\s*\^\s*\{{?\d\}}?)?\s*$")
_TEXT_UNWRAP_RE = re.compile(rf"\\{_TEXT_CMDS}\s*\{{((?:[^{{}}]|\{{[^{{}}]*\}})*)\}}")
_NUMBERISH = r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?"
_UNIT_WORDS_RE = re.compile(
    rf"^(?P<num>{_NUMBERISH})\s*(?P<unit>[A-Za-z][A-Za-z]+(?:[\s\-/\.]+[A-Za-z]+)*(?:\^?\d)?)\s*\.?$"
)
_NOT_UNITS = {
    "pi",
    "sqrt",
    "and",
    "or",
    "to",
    "times",
    "cdot",
    "over",
    "plus",
    "minus",
    "mod",
    "hundred",
    "thousand",
    "million",
    "billion",
    "trillion",
    "dozen",
    "percent",
    "sin",
    "cos",
    "tan",
    "log",
    "ln",
    "exp",
    "frac",
    "e",
    "i",
}
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|°|\\degree\b|\^\s*\{\s*\}")
_SPACING_RE = re.compile(r"\\[;:> ]|\\q?quad\b|~")
_DELIMS_RE = re.compile(r"\\\(|\\\)|\\\[|\\\]")
_SIZING_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![A-Za-z])\s*\.?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:(?:,|\s)\d{3})+(?:\.\d+)?")
_SIMPLE_LHS_RE = re.compile(r"^(?:[A-Za-z]{1,3}|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?(?:\([A-Za-z]\))?$")
_LHS_EXPR_RE = re.compile(r"^[A-Za-z+\-*/ ^()]+$")
_NUMPY_RE = re.compile(r"\b(?:np|numpy|math)\.([A-Za-z]+)")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*(\d+)")
_TRAILING_DOT_NUM_RE = re.compile(r"(\d)\.(?!\d)")
_SCI_RE = re.compile(r"(?<![A-Za-z\\\d.])(\d+(?:\.\d+)?)[eE]([-+]?\d{1,6})(?![\d.A-Za-z])")


def _split_assignment(s: str, any_lhs: bool = False) -> str:
    """``x = 5`` -> ``5``: keep the right side of a final assignment to a simple left side
    (with ``any_lhs``: of any final equation, e.g. ``3 \\times 4 = 12`` -> ``12``)."""
    if "=" not in s or "," in s or ";" in s or "\\text" in s:
        return s
    # last "=" that is not part of <=, >=, !=, \leq ...
    idx = -1
    for m in re.finditer(r"(?<![<>!\\])=", s):
        idx = m.start()
    if idx <= 0:
        return s
    lhs, rhs = s[:idx].strip(), s[idx + 1 :].strip()
    if not rhs:
        return s
    lhs_last = re.split(r"(?<![<>!\\])=", lhs)[-1].strip()
    if any_lhs or _SIMPLE_LHS_RE.match(lhs_last) or _LHS_EXPR_RE.match(lhs_last):
        return rhs
    return s


def final_value(pred: str) -> str:
    """Right side of a final equation in a normalized prediction (for ground truths without "=")."""
    return _split_assignment(pred, any_lhs=True)


def has_percent(ans: str | None) -> bool:
    return bool(ans) and "%" in ans


def _strip_units(s: str) -> str:
    # trailing \text{ cm}, \mathrm{~m/s}, \text{ dollars}^2 after a number or a closed group
    for _ in range(3):
        new = _TRAILING_TEXT_RE.sub("", s)
        if new == s:
            break
        s = new.rstrip()
    m = _UNIT_WORDS_RE.match(s)
    if m:
        first = re.split(r"[\s\-/\.^]", m.group("unit"))[0].lower()
        if first not in _NOT_UNITS:
            s = m.group("num")
    return s


def normalize_answer(ans: str | None) -> str:
    """Canonical form of an answer string (LaTeX kept, spacing collapsed)."""
    if not ans:
        return ""
    s = ans.strip()[:_MAX_NORMALIZE_CHARS]
    if "\\boxed" in s or "\\fbox" in s:
        from fastdapo.rewards.extract import last_boxed

        inner = last_boxed(s)
        if inner is not None:
            s = inner
    s = s.replace("\\$", "").replace("$", "")
    s = _DELIMS_RE.sub("", s)
    s = s.replace("\\displaystyle", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _SIZING_RE.sub("", s)
    s = re.sub(r"(\d)\\,(\d{3})", r"\1\2", s)  # 1\,000
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", " ")
    s = _SPACING_RE.sub(" ", s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(" .。,;:")
    s = _strip_units(s)
    s = _TEXT_UNWRAP_RE.sub(lambda m: m.group(1), s).strip()
    s = _strip_units(s)
    s = _split_assignment(s)
    s = _NUMPY_RE.sub(r"\\\1", s)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = _TRAILING_DOT_NUM_RE.sub(r"\1", s)
    s = s.strip().rstrip(" .。,;:")
    if _THOUSANDS_RE.fullmatch(s):
        s = re.sub(r"[,\s]", "", s)
    if s.startswith("+") and len(s) > 1:
        s = s[1:].lstrip()
    if re.fullmatch(r"\(\s*[A-Ea-e]\s*\)", s):  # multiple-choice "(B)"
        s = s.strip("() ")
    return s


def answer_key(normalized: str) -> str:
    """String-equality key of a normalized answer (no whitespace)."""
    return re.sub(r"\s+", "", normalized)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_PLAIN_RE = re.compile(rf"({_NUM})(?:[eE]([-+]?\d{{1,6}}))?")
_TIMES10_RE = re.compile(rf"({_NUM})(?:\\times|\\cdot|\*|×|x)10\^\{{?([-+]?\d{{1,6}})\}}?")
_POW10_RE = re.compile(r"10\^\{?([-+]?\d{1,6})\}?")
_FRAC_RE = re.compile(r"([-+]?)\\frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+)")
# Larger exponents are left to the symbolic checker rather than building huge integers here.
_MAX_EXPONENT = 400


def _scaled(mantissa: str, exponent: int) -> Fraction:
    if abs(exponent) > _MAX_EXPONENT:
        raise OverflowError
    return Fraction(mantissa) * Fraction(10) ** exponent


def plain_number(key: str) -> tuple[Fraction, bool] | None:
    """Exact value of a plain numeric key, and whether it is written as an integer.

    Accepts ``42``, ``-0.50``, ``4.5e33``, ``4.5\\times10^{33}``, ``10^{6}``, ``\\frac{3}{4}``,
    ``-3/4``; anything else -> None.
    """
    if not key or len(key) > 128:
        return None
    try:
        m = _PLAIN_RE.fullmatch(key)
        if m:
            mant, exp = m.group(1), m.group(2)
            return _scaled(mant, int(exp or 0)), exp is None and "." not in mant
        m = _TIMES10_RE.fullmatch(key)
        if m:
            return _scaled(m.group(1), int(m.group(2))), False
        m = _POW10_RE.fullmatch(key)
        if m:
            return _scaled("1", int(m.group(1))), False
        m = _FRAC_RE.fullmatch(key)
        if m:
            if m.group(2) is not None:
                sign, num, den = m.group(1), int(m.group(2)), int(m.group(3))
            else:
                sign, num, den = "", int(m.group(4)), int(m.group(5))
            value = Fraction(num, den)
            return (-value if sign == "-" else value), False
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def to_math_verify(normalized: str) -> str:
    """The form handed to the symbolic checker: scientific ``e`` notation spelled out in LaTeX."""
    s = _SCI_RE.sub(r"\1\\times 10^{\2}", normalized)
    return "$" + s + "$"
