"""GPU check part (c), the verdicts: judged only from what the `fastdapo train` run left behind.

Its exit code and RUN_DIR/metrics.jsonl (one row per step; a step-0 row holds the evaluation before
training).  The product averages grad_norm over finite values and skips non-finite updates, so a
skipped update is its own verdict: a finite mean alone would hide it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str


def read_steps(metrics: Path, since: float | None = None) -> tuple[list[dict], str]:
    """The training-step rows (step >= 1) of metrics.jsonl, and why there are none when there are none.

    ``since``: a file not written after this time (seconds since the epoch) is stale, from an earlier run.
    """
    if not metrics.exists():
        return [], f"no {metrics}"
    if since is not None and metrics.stat().st_mtime < since:
        return [], f"{metrics} was not written by this run"
    rows = []
    for n, line in enumerate(metrics.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            return [], f"{metrics} line {n} is not JSON: {e}"
    steps = [r for r in rows if isinstance(r.get("step"), int) and r["step"] >= 1]
    return steps, "" if steps else f"{metrics} holds no training step"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def run_verdicts(code: int | None, seconds: float, rows: list[dict], why_empty: str, steps: int) -> list[Verdict]:
    """The four verdicts of the brief plus the non-finite-skip one; ``code`` None = killed at its time limit."""
    if code is None:
        exit_v = Verdict("exit code 0", False, f"killed after {seconds:.0f} s: the check's time budget ran out")
    else:
        exit_v = Verdict("exit code 0", code == 0, f"exit code {code} after {seconds:.0f} s")
    got = [r["step"] for r in rows]
    count = Verdict(
        f"metrics.jsonl has steps 1..{steps}",
        got == list(range(1, steps + 1)),
        f"steps {got}" if got else why_empty,
    )
    if not rows:
        return [exit_v, count] + [
            Verdict(name, False, why_empty)
            for name in ("loss and grad_norm finite at every step", "no update skipped", "some loss or grad non-zero")
        ]
    bad = [f"step {r['step']}: loss {r.get('loss')}, grad_norm {r.get('grad_norm')}" for r in rows]
    bad = [b for b, r in zip(bad, rows) if not (_finite(r.get("loss")) and _finite(r.get("grad_norm")))]
    skipped = sum(r.get("train/skipped_updates", 0) or 0 for r in rows)
    updates = sum(r.get("train/updates", 0) or 0 for r in rows)
    moving = [r["step"] for r in rows if any(_finite(r.get(k)) and r[k] != 0 for k in ("loss", "grad_norm"))]
    return [
        exit_v,
        count,
        Verdict(
            "loss and grad_norm finite at every step", not bad, "; ".join(bad) or f"{len(rows)} step(s) all finite"
        ),
        Verdict("no update skipped", skipped == 0, f"{skipped} of {updates + skipped} update(s) skipped as non-finite"),
        Verdict(
            "some loss or grad non-zero",
            bool(moving),
            f"non-zero at step(s) {moving}, {updates} update(s) applied"
            if moving
            else f"loss and grad_norm 0 at every step ({updates} update(s) applied): nothing was learned",
        ),
    ]
