"""Shared pieces of the one-command GPU check: kernel-package import, result rows, time budget, subprocesses."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kernels_module():
    """The fused-loss kernels package under its current import name."""
    try:
        import fastdapo_kernels as K
    except ImportError:
        import kernels as K
    return K


def kernels_submodule(name: str):
    return importlib.import_module(f"{kernels_module().__name__}.{name}")


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class Budget:
    """Wall-clock budget shared by all parts; parts poll it to stop before the deadline."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


class OutOfTime(RuntimeError):
    """Raised inside a part when the global budget is nearly used."""


@dataclass
class PartResult:
    """What one part hands back: CSV rows, a markdown body and its pass/fail status."""

    name: str
    status: str = "pass"  # pass | fail | error | skipped
    rows: list[dict] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # a few lines for the compact console summary
    seconds: float = 0.0

    def add(self, item: str, metric: str, value, ok: bool | None = None, detail: str = ""):
        """One CSV row; ``ok=False`` marks the part failed."""
        if ok is False and self.status == "pass":
            self.status = "fail"
        self.rows.append(
            {
                "part": self.name,
                "item": item,
                "metric": metric,
                "value": _fmt(value),
                "ok": "" if ok is None else str(bool(ok)),
                "detail": detail,
            }
        )


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def child_env(cpu: bool) -> tuple[dict, list[str]]:
    """Environment of the check's subprocesses, and notes on what was changed in it.

    The checkout's packages are importable without installing (the check runs from a bare checkout);
    on CUDA a CPU-only setting inherited from the caller (the Makefile exports DS_ACCELERATOR=cpu for
    the CPU targets) would silently move DeepSpeed or Triton off the GPU, so it is dropped and said.
    """
    env = dict(os.environ)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "kernels"), str(ROOT / "bench"), *inherited])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    notes = []
    if not cpu:
        for key, cpu_value in (("DS_ACCELERATOR", "cpu"), ("TRITON_INTERPRET", "1")):
            if env.get(key) == cpu_value:
                del env[key]
                notes.append(f"{key}={cpu_value} from the environment dropped: this run is on CUDA")
    return env, notes


def run_logged(cmd: list[str], env: dict, log: Path, timeout_s: float) -> tuple[int | None, float]:
    """Run ``cmd`` from the repository root with its output in ``log``; (exit code or None on timeout, seconds).

    It gets a process group of its own so that a timeout also ends what it started (launcher ranks).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, time.monotonic() - t0


def log_tail(log: Path, lines: int = 30) -> list[str]:
    """The end of a subprocess log as a markdown code block (empty when there is no log)."""
    if not log.exists():
        return []
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return ["```", *(line[:300] for line in tail), "```"]
