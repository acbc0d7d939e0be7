"""Graceful stop on SIGTERM / SIGINT: the trainer checkpoints and exits instead of dying mid-write.

The first signal only sets a flag. The trainer polls it at two points of every step:

- before the update (rollout and scoring done, weights untouched): the step is abandoned and the
  checkpoint is that of the previous step, with the trainer state saved at the start of this step,
  so a resumed run replays the abandoned step exactly;
- after the step: the finished step is checkpointed.

Then `train` returns normally; `fastdapo train` exits with status 0 after SIGTERM (a scheduler's
pre-emption notice: the run is saved and can be resumed) and 130 after SIGINT (Ctrl-C). A second
SIGINT raises KeyboardInterrupt at once, without saving. On several processes the flag is combined
over ranks, so every rank stops at the same point even if only one of them got the signal.
"""

from __future__ import annotations

import logging
import signal
import threading

from fastdapo.runtime import distributed as D

log = logging.getLogger(__name__)

EXIT_CODES = {"SIGTERM": 0, "SIGINT": 130}


class StopSignal:
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None  # this process's first signal
        self.stopping: str | None = None  # set once the ranks agreed to stop
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = name
        log.warning(
            "%s received: stopping after a checkpoint at the next safe point%s",
            name,
            " (Ctrl-C again to abort without saving)" if signum == signal.SIGINT else "",
        )

    def requested(self) -> bool:
        """Collective: True on every rank once any rank got a signal."""
        if self.stopping:
            return True
        code = {"SIGTERM": 1.0, "SIGINT": 2.0}.get(self.received or "", 0.0)
        code = D.all_reduce([code], "max")[0]
        if code:
            self.stopping = self.received or ("SIGINT" if code == 2.0 else "SIGTERM")
        return bool(code)
