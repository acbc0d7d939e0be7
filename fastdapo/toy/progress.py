"""The warm start's progress bar, on the trainer's console so that it and the log share one stream."""

from __future__ import annotations

from fastdapo.observability.progress import progress_bar
from fastdapo.runtime import distributed as D


class WarmStartProgress:
    def __init__(self, total: int, enabled: bool = True):
        self._progress = progress_bar("warm start", enabled and D.is_main())
        self._task = self._progress.add_task("sft", total=total, info="")
        self._loss: float | None = None

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def step(self, loss: float) -> None:
        # An exponential average: single-batch losses jump around too much to read.
        self._loss = loss if self._loss is None else 0.95 * self._loss + 0.05 * loss
        self._progress.update(self._task, advance=1, info=f"loss {self._loss:.3f}")
