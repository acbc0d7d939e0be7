"""The Minerva-style answer normalizer of the DAPO reference reward, step for step.

``normalize_final_answer`` reproduces the reference (verl ``math_dapo.normalize_final_answer``,
itself from the Minerva / hendrycks-math evaluation) exactly, including its quirks, because the
``dapo`` reward is defined as "the reference's decision". The two word lists below are that
specification's data and must stay in the same order (replacements are applied in sequence, so
order changes results). The reference expresses the brace steps as regular expressions; here each
is a plain scan with the same semantics (``.`` never crosses a newline), linear in the input, so a
long ground truth cannot trigger regex backtracking.
"""

from __future__ import annotations

# (before, after), applied in order with str.replace
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)

# deleted in order with str.replace (note: plain substrings, so "cm" also goes from "\text{cm}")
REMOVED_EXPRESSIONS: tuple[str, ...] = (
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    '"',
    "\\dots",
)


def _first_math_per_line(s: str) -> str:
    """A line holding two or more ``$`` becomes ``$<text between its first two $>$``."""
    lines = s.split("\n")
    for k, line in enumerate(lines):
        i = line.find("$")
        j = line.find("$", i + 1) if i >= 0 else -1
        if j >= 0:
            lines[k] = "$" + line[i + 1 : j] + "$"
    return "\n".join(lines)


def _unwrap_to_first_close(s: str, opener: str) -> str:
    """``<opener>X}`` -> ``X`` with X the shortest run up to a ``}`` on the same line (no nesting)."""
    out: list[str] = []
    pos = 0
    close = newline = -1  # cached next "}" / "\n" at or after the current opener's content
    while True:
        i = s.find(opener, pos)
        if i < 0:
            break
        start = i + len(opener)
        if close < start:
            close = s.find("}", start)
            if close < 0:
                break  # no "}" further on: no later opener can match either
        if newline < start and newline != len(s):
            newline = s.find("\n", start)
            newline = len(s) if newline < 0 else newline
        if newline < close:  # the group would cross a line break: this opener does not match
            out.append(s[pos : i + 1])
            pos = i + 1
            continue
        out.append(s[pos:i])
        out.append(s[start:close])
        pos = close + 1
    out.append(s[pos:])
    return "".join(out)


def _unwrap_boxed(s: str) -> str:
    """Per line: the first ``\\boxed{`` up to the LAST ``}`` of that line -> the text between."""
    opener = "\\boxed{"
    lines = s.split("\n")
    for k, line in enumerate(lines):
        i = line.find(opener)
        if i >= 0:
            j = line.rfind("}", i + len(opener))
            if j >= 0:
                lines[k] = line[:i] + line[i + len(opener) : j] + line[j + 1 :]
    return "\n".join(lines)


def _brace_shorthand(s: str, command: str, nargs: int) -> str:
    """``frac12`` -> ``frac{1}{2}``, ``sqrt2`` -> ``sqrt{2}``: the argument characters after the
    command are braced when the first is not ``{`` (for ``frac`` the second may be anything but a
    newline, as the reference's ``.``)."""
    out: list[str] = []
    pos = 0
    width = len(command) + nargs
    while True:
        i = s.find(command, pos)
        if i < 0 or i + width > len(s):
            break
        args = s[i + len(command) : i + width]
        if args[0] != "{" and "\n" not in args[1:]:
            out.append(s[pos:i] + command + "".join("{" + a + "}" for a in args))
            pos = i + width
        else:
            out.append(s[pos : i + 1])
            pos = i + 1
    out.append(s[pos:])
    return "".join(out)


def normalize_final_answer(answer: str) -> str:
    """The reference normalization (see the module docstring of ``dapo_reward`` for the rules)."""
    s = answer.split("=")[-1]
    for before, after in SUBSTITUTIONS:
        s = s.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        s = s.replace(expr, "")
    s = _first_math_per_line(s)
    for opener in ("\\text{", "\\textbf{", "\\overline{"):
        s = _unwrap_to_first_close(s, opener)
    s = _unwrap_boxed(s)
    s = _brace_shorthand(s, "frac", 2)
    s = _brace_shorthand(s, "sqrt", 1)
    s = s.replace("$", "")
    if s.replace(",", "").isdigit():  # str.isdigit, as the reference: "1,000" -> "1000"
        s = s.replace(",", "")
    return s.strip()
