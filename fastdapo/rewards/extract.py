"""Pull the final answer out of a model response.

DAPO asks for the answer on a last line of the form ``Answer: ...``; the last such line wins.
Responses without one fall back to the last ``\\boxed{...}`` (balanced braces). Everything here is
plain string scanning, linear in the input, and never evaluates the text.
"""

from __future__ import annotations

import re

# Only the tail of a response is searched: the answer is at the end, and this bounds the work.
MAX_RESPONSE_CHARS = 200_000
MAX_ANSWER_CHARS = 4_096

_ANSWER_RE = re.compile(r"answer\s*[:：]", re.IGNORECASE)
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_LEAD_PHRASE_RE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|=|:)?\s*[:：]?\s*", re.IGNORECASE)


def _balanced_group(text: str, open_pos: int) -> str | None:
    """Content of the ``{...}`` group opening at ``open_pos`` (balanced braces, ``\\{`` skipped)."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_pos + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in text."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    # Only the last few openings are tried: an unclosed one scans to the end of the text, so
    # trying all of them would be quadratic on adversarial input.
    for start in reversed(starts[-4:]):
        j = start
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            inner = _balanced_group(text, j)
            if inner is not None:
                return inner
        elif j > start:  # "\boxed 5": one token
            m = re.match(r"[^\s$]+", text[j:])
            if m:
                return m.group(0)
    return None


def _answer_line(response: str) -> str | None:
    last = None
    for last in _ANSWER_RE.finditer(response):  # noqa: B007 - keeps the last match
        pass
    if last is None:
        return None
    rest = response[last.end() :]
    line, _, after = rest.partition("\n")
    if not line.strip(" \t*_$`") and after:
        # "Answer:" alone on its line: the answer is on the next non-empty line.
        for nxt in after.split("\n", 8)[:8]:
            if nxt.strip(" \t*_`"):
                line = nxt
                break
    return line


def _clean_answer_line(line: str) -> str:
    line = line.strip()
    # markdown emphasis / code around the answer: "**Answer:** 42", "`42`"
    line = line.strip("*_` \t")
    line = _LEAD_PHRASE_RE.sub("", line)
    boxed = last_boxed(line)
    if boxed is not None:
        return boxed.strip()
    # Prose around inline math ("The number of minutes is $204$."): keep the last math segment.
    segments = [seg for seg in re.findall(r"\$\$?([^$]+?)\$\$?", line) if seg.strip()]
    if segments:
        outside = re.sub(r"\$\$?[^$]+?\$\$?", " ", line)
        if re.search(r"[A-Za-z]{3,}", outside):
            return segments[-1].strip()
    return line.strip()


def extract_answer(response: str) -> str | None:
    """The candidate answer string of a response, or None when it gives none."""
    if not response:
        return None
    text = response[-MAX_RESPONSE_CHARS:]
    line = _answer_line(text)
    if line is not None:
        ans = _clean_answer_line(line)
        if ans:
            return ans[:MAX_ANSWER_CHARS]
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()[:MAX_ANSWER_CHARS]
    return None
