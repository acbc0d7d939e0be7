"""Shared pieces of the one-command GPU check: kernel-package import, result rows, time budget."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field


def kernels_module():
    """The fused-loss kernels package under its current import name."""
    try:
        import fastdapo_kernels as K
    except ImportError:
        import kernels as K
    return K


def kernels_submodule(name: str):
    return importlib.import_module(f"{kernels_module().__name__}.{name}")


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
