"""The ``dapo`` reward: the DAPO reference reward's decision (verl ``math_dapo.compute_score`` as
called by the DAPO reward manager, default non-strict mode), rule by rule:

1. Window: only the last 300 characters of the response are looked at (``response[-300:]``);
   an answer further from the end is not seen.
2. Extraction: every non-overlapping match of ``Answer\\s*:\\s*([^\\n]+)`` (case-insensitive,
   left to right) in the window; the captured text of the LAST match is the answer. The capture
   runs to the end of its line, so ``Answer: 5 Answer: 6`` gives ``5 Answer: 6``; ``\\s*`` may
   cross newlines, so ``Answer:\\n42`` gives ``42``. A response without an ``Answer:`` line is
   wrong (verl up to 0.9.0, the DAPO paper) unless ``reward_boxed_fallback`` is on (rule 6).
   Markdown stays in the answer: ``**Answer:** 42`` captures ``** 42``, wrong.
3. Normalization (``minerva_normalize.normalize_final_answer``), applied to the answer and to the
   ground truth alike: keep the text after the last ``=``; apply the substitutions (``"an "``,
   ``"a "`` and spaces deleted, ``.$`` -> ``$``, ``\\$`` deleted, ``mbox`` -> ``text``, ...); delete
   the listed unit words and macros (``units``, ``dollars``, ``cm``, ``^\\circ``, ``{,}``, ...) as
   plain substrings; a line with two ``$`` keeps only the first ``$...$``; unwrap ``\\text{}``,
   ``\\textbf{}``, ``\\overline{}`` (to the first ``}``) and ``\\boxed{}`` (to the last ``}`` of the
   line); brace ``fracab`` / ``sqrta`` shorthands; delete ``$``; drop commas when what remains is
   digits and commas; strip surrounding whitespace.
4. Comparison: the two normalized strings must be identical; no numeric or symbolic equivalence
   (``0.5`` vs ``\\frac{1}{2}``, ``18.0`` vs ``18``, ``5.`` vs ``5`` all differ).
5. Result: score +1.0 / -1.0, acc the decision, pred the normalized answer.
6. ``reward_boxed_fallback`` (off by default; verl 0.9.1's ``math_dapo``): without an ``Answer:``
   line, the last ``\\boxed{`` in the last 100 characters, brace-matched, is the answer; its content
   must equal the ground truth verbatim (no normalization: ``\\boxed{ 5 }`` is wrong for ``5``);
   pred is that content. No complete box there: wrong, as without the fallback.

Deliberate differences (each a plain reference bug; every other decision is the reference's):

- A ground truth that normalizes to ``""`` (e.g. ``"units"``) is never matched by an ``Answer:``
  line; the reference accepts any answer that also normalizes to ``""`` (``Answer: units``). The
  fallback's verbatim compare has no such hole, so only a blank ground truth is refused there.
- A response without an ``Answer:`` line (and, with the fallback, without a box) is always wrong
  and its pred is ``""``; the reference compares the sentinel ``"[INVALID]"`` and so would accept it
  for a ground truth ``[INVALID]`` (and verl 0.9.1 also tries its box fallback after an ``Answer:``
  line whose text normalizes to ``[INVALID]``).
- A non-string ground truth (an integer column) is read with ``str()``; the reference raises.

All of it is string scanning over at most 300 characters of response (and the ground truth), with
no backtracking-prone patterns, so the reward is bounded in time without worker processes.
"""

from __future__ import annotations

import re
from functools import lru_cache

from fastdapo.rewards.minerva_normalize import normalize_final_answer
from fastdapo.rewards.result import RewardResult, reward_result

WINDOW_CHARS = 300
BOX_WINDOW_CHARS = 100  # verl's strict-box window, taken from the end of the 300-character one
_ANSWER_RE = re.compile(r"Answer\s*:\s*([^\n]+)", re.IGNORECASE)
_BOX = "\\boxed{"


def extract_answer_line(response: str) -> str | None:
    """The raw answer of the last ``Answer:`` match in the response's window, or None."""
    found = _ANSWER_RE.findall(response[-WINDOW_CHARS:])
    return found[-1] if found else None


def last_boxed_content(response: str) -> str | None:
    """Content of the last ``\\boxed{`` in the last ``BOX_WINDOW_CHARS`` characters, up to its
    matching brace (verl's ``last_boxed_only_string``); None when there is none or it is unclosed."""
    tail = response[-WINDOW_CHARS:][-BOX_WINDOW_CHARS:]
    start = tail.rfind(_BOX)
    if start < 0:
        return None
    depth = 0
    for i in range(start + len(_BOX) - 1, len(tail)):
        if tail[i] == "{":
            depth += 1
        elif tail[i] == "}":
            depth -= 1
            if depth == 0:
                return tail[start + len(_BOX) : i]
    return None


# ground truths repeat G times per group and across epochs
@lru_cache(maxsize=1 << 16)
def _normalized_gold(ground_truth: str) -> str:
    return normalize_final_answer(ground_truth)


def dapo_reward(
    response: str, ground_truth: str, timeout_s: float | None = None, reward_boxed_fallback: bool = False
) -> RewardResult:
    """Reference DAPO reward of one response (rules in the module docstring); ``timeout_s`` is
    accepted for a uniform signature and unused (the work is bounded by the window)."""
    response = response or ""
    gt = ground_truth if isinstance(ground_truth, str) else str(ground_truth)
    raw = extract_answer_line(response)
    if raw is None:
        boxed = last_boxed_content(response) if reward_boxed_fallback else None
        if boxed is None:
            return reward_result(False, "")
        # verl compares the box verbatim; a blank ground truth would make `\boxed{}` correct
        return reward_result(bool(gt.strip()) and boxed == gt, boxed)
    pred = normalize_final_answer(raw)
    gold = _normalized_gold(gt)
    return reward_result(bool(gold) and pred == gold, pred)


def score_batch_dapo(
    responses: list[str],
    ground_truths: list[str],
    num_workers: int | None = None,
    timeout_s: float | None = None,
    reward_boxed_fallback: bool = False,
) -> list[RewardResult]:
    """``dapo_reward`` over a batch, in this process (``num_workers`` / ``timeout_s`` unused)."""
    if len(responses) != len(ground_truths):
        raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")
    return [dapo_reward(r, g, reward_boxed_fallback=reward_boxed_fallback) for r, g in zip(responses, ground_truths)]
