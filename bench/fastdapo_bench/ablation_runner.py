"""Runs the ablation's `fastdapo train` processes one after another, with one progress line per run.

Sequential on purpose: the ladder is meant for a 2-core CPU, where two runs side by side only slow each other.
Each run's output (stdout and stderr) goes to its own log file; a failed run is reported in one line (rung, seed,
exit status, the log's last error line, the log's path) and the bench goes on with the next run: the other rungs
are still worth having, and the report marks the failure. Ctrl-C reaches the running `fastdapo train` too (same
process group), which stops at its next safe point; the bench then stops and reports what finished.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .ablation_plan import RunSpec

__all__ = ["RunOutcome", "child_env", "run_all"]


@dataclass
class RunOutcome:
    spec: RunSpec
    returncode: int | None  # None: not run (the bench was interrupted before it)
    wall_s: float
    error: str = ""  # one line, for a failed run

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def child_env(threads: int) -> dict[str, str]:
    """The runs' environment: ``threads`` torch/OpenMP threads each.

    On a shared 2-core machine the default (one thread per core) is catastrophic once other work competes: the
    OpenMP threads wait for each other at every small op. Measured on this project's toy run under a load
    average of ~8: 40 steps took 538 s with 2 threads and 59 s with 1, same results.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _error_line(log: Path) -> str:
    """The line a failed `fastdapo train` ended on: its one-line ``Error: ...``, else the log's last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("Error:") or "Error: " in line]
    return (errors or lines or ["empty log"])[-1][:300]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_one(spec: RunSpec, env: dict[str, str]) -> RunOutcome:
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with spec.log.open("w") as out:
        out.write(spec.shell() + "\n\n")
        out.flush()
        proc = subprocess.Popen(spec.command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT: let it save and stop, then stop the bench
            try:
                proc.wait(timeout=60)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
            raise
    wall = time.monotonic() - t0
    error = "" if code == 0 else _error_line(spec.log)
    return RunOutcome(spec, code, wall, error)


def run_all(
    specs: list[RunSpec],
    env: dict[str, str],
    echo: Callable[[str], None] = print,
    describe: Callable[[RunSpec], str] = lambda spec: "",
) -> tuple[list[RunOutcome], bool]:
    """Every run in order; (outcomes, interrupted). ``describe`` adds a finished run's key numbers to its line."""
    outcomes: list[RunOutcome] = []
    total, spent = len(specs), 0.0
    for i, spec in enumerate(specs, 1):
        echo(f"[{i}/{total}] {spec.label}: running (log {spec.log})")
        try:
            outcome = run_one(spec, env)
        except KeyboardInterrupt:
            echo(f"[{i}/{total}] {spec.label}: interrupted; stopping the bench")
            return outcomes, True
        outcomes.append(outcome)
        spent += outcome.wall_s
        left = total - i
        eta = f"; ETA {_minutes(spent / i * left)} for {left} more" if left else ""
        if outcome.ok:
            echo(f"[{i}/{total}] {spec.label}: done in {_minutes(outcome.wall_s)}{describe(spec)}{eta}")
        else:
            echo(
                f"[{i}/{total}] FAILED {spec.label} (exit {outcome.returncode}) after {_minutes(outcome.wall_s)}: "
                f"{outcome.error} -- log: {spec.log}; going on{eta}"
            )
    return outcomes, False
