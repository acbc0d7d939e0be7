"""Symbolic equivalence with a hard per-call time limit.

math-verify's own timeouts use ``signal.alarm`` (main thread only, whole seconds), so they cannot
protect a trainer that scores from a background thread. Instead each check runs in a persistent
worker process (``_mv_worker.py``, started with the current interpreter); the parent waits on the
worker's pipe with a deadline and kills the worker when it overruns, restarting it lazily. Workers
are pooled and reused across calls; results are cached (timeouts included, as "not equivalent").
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mv_worker.py")
# Time allowed for a fresh worker to import math-verify, on top of the per-check limit.
STARTUP_TIMEOUT_S = 60.0
_CACHE_SIZE = 200_000
_KEEP_IDLE = max(4, min(16, os.cpu_count() or 1))  # idle workers kept for reuse


@dataclass
class Verdict:
    ok: bool
    status: str  # "ok" | "timeout" | "error"


class _Worker:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.ready = False
        self.respawned = False  # restarted after a kill: its start-up counts against the limit

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.buf, self.ready = b"", False
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", _WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            close_fds=True,
            env=env,
        )

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, req_id: int, gold: str, pred: str) -> bool:
        try:
            self.proc.stdin.write((json.dumps({"i": req_id, "g": gold, "p": pred}) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def read_messages(self) -> list[dict] | None:
        """Messages available now; None when the worker closed its end (died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except OSError:
            return None
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except Exception:
                pass


class VerifierPool:
    """Pool of equivalence workers. Thread-safe: each call takes workers exclusively."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._req = 0
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._warned = False
        self.stats = {"checks": 0, "cache_hits": 0, "timeouts": 0, "errors": 0, "restarts": 0}

    # -- workers ---------------------------------------------------------------------------------
    def _acquire(self, k: int) -> list[_Worker]:
        with self._lock:
            got = [self._idle.pop() for _ in range(min(k, len(self._idle)))]
        return got + [_Worker() for _ in range(k - len(got))]

    def _release(self, workers: list[_Worker]) -> None:
        with self._lock:
            for w in workers:
                if w.alive() and len(self._idle) < _KEEP_IDLE:
                    self._idle.append(w)
                else:
                    w.kill()

    def _next_id(self) -> int:
        with self._lock:
            self._req += 1
            return self._req

    def warmup(self, n: int = 1) -> None:
        """Start ``n`` workers now (otherwise the first check pays the start-up)."""
        workers = self._acquire(n)
        for w in workers:
            if not w.alive():
                w.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            for w in workers:
                if w.alive() and not w.ready:
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    w = key.data
                    msgs = w.read_messages()
                    if msgs is None or any(m.get("ready") for m in msgs):
                        sel.unregister(w.proc.stdout)
                        if msgs is None:
                            w.kill()
                        else:
                            w.ready = True
        self._release(workers)

    def shutdown(self) -> None:
        if os.getpid() != self.pid:  # inherited through fork: the workers belong to the parent
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()

    # -- cache -----------------------------------------------------------------------------------
    def _cache_get(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            val = self._cache.get(key)
            if val is not None:
                self._cache.move_to_end(key)
            return val

    def _cache_put(self, key: tuple[str, str], val: bool) -> None:
        with self._lock:
            self._cache[key] = val
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    # -- checks ----------------------------------------------------------------------------------
    def check(
        self, pairs: list[tuple[str, str]], timeout_s: float = 5.0, num_workers: int | None = None
    ) -> list[Verdict]:
        """Is each ``(gold, pred)`` pair equivalent (math-verify)? One verdict per pair, in order.

        Every pair gets at most ``timeout_s`` of worker time (plus a one-off start-up allowance
        for a freshly started worker); an overrun kills the worker and counts as not equivalent.
        """
        verdicts: list[Verdict | None] = [None] * len(pairs)
        todo: dict[tuple[str, str], list[int]] = {}
        for i, pair in enumerate(pairs):
            hit = self._cache_get(pair)
            if hit is not None:
                verdicts[i] = Verdict(hit, "ok")
                self.stats["cache_hits"] += 1
            else:
                todo.setdefault(pair, []).append(i)
        if todo:
            jobs = list(todo)
            if num_workers is None:
                num_workers = min(os.cpu_count() or 1, 8)
            # no more workers than the work justifies (each start costs ~0.5 s of CPU)
            k = max(1, min(num_workers, (len(jobs) + 3) // 4))
            for pair, verdict in zip(jobs, self._run(jobs, timeout_s, k)):
                if verdict.status != "error":
                    self._cache_put(pair, verdict.ok)
                for i in todo[pair]:
                    verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def _run(self, jobs: list[tuple[str, str]], timeout_s: float, k: int) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(jobs)
        queue = deque(range(len(jobs)))
        workers = self._acquire(k)
        inflight: dict[_Worker, list] = {}  # worker -> [job, request id, deadline, in start-up]
        sel = selectors.DefaultSelector()

        def finish(w: _Worker, verdict: Verdict, kill: bool = False) -> None:
            j = inflight.pop(w)[0]
            sel.unregister(w.proc.stdout)
            out[j] = verdict
            if kill:
                w.kill()
                try:  # replace it now, so that its start-up overlaps other work
                    w.start()
                    w.respawned = True
                    self.stats["restarts"] += 1
                except OSError:
                    pass

        try:
            while queue or inflight:
                for w in workers:
                    if w in inflight or not queue:
                        continue
                    j = queue.popleft()
                    try:
                        if not w.alive():
                            died = w.proc is not None
                            if died:
                                w.kill()
                                self.stats["restarts"] += 1
                            w.start()
                            w.respawned = w.respawned or died
                    except OSError as exc:
                        log.warning("reward verifier worker failed to start: %s", exc)
                        out[j] = Verdict(False, "error")
                        self.stats["errors"] += 1
                        continue
                    rid = self._next_id()
                    if not w.send(rid, *jobs[j]):
                        w.kill()
                        out[j] = Verdict(False, "error")
                        self.stats["errors"] += 1
                        continue
                    # A worker's first start (importing math-verify) is not charged to the check;
                    # a replacement started after a kill is, so repeated overruns stay bounded.
                    allowance = 0.0 if (w.ready or w.respawned) else STARTUP_TIMEOUT_S
                    inflight[w] = [j, rid, time.monotonic() + timeout_s + allowance, allowance > 0]
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                    self.stats["checks"] += 1
                if not inflight:
                    continue
                wait = max(0.0, min(v[2] for v in inflight.values()) - time.monotonic())
                for key, _ in sel.select(timeout=wait):
                    w = key.data
                    msgs = w.read_messages()
                    if msgs is None:
                        self.stats["errors"] += 1
                        if not self._warned:
                            self._warned = True
                            log.warning(
                                "reward equivalence worker exited unexpectedly (is math-verify "
                                "installed for %s?); such answers count as wrong",
                                sys.executable,
                            )
                        finish(w, Verdict(False, "error"), kill=True)
                        continue
                    for msg in msgs:
                        if msg.get("ready"):
                            w.ready = True
                            if inflight[w][3]:
                                inflight[w][2] = time.monotonic() + timeout_s
                        elif msg.get("i") == inflight[w][1]:
                            finish(w, Verdict(bool(msg.get("ok")), "error" if msg.get("e") == "memory" else "ok"))
                            break
                now = time.monotonic()
                for w, (_, _, deadline, _) in list(inflight.items()):
                    if now >= deadline:
                        self.stats["timeouts"] += 1
                        finish(w, Verdict(False, "timeout"), kill=True)
        finally:
            for w in list(inflight):
                w.kill()
            sel.close()
            self._release(workers)
        return out  # type: ignore[return-value]


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifierPool:
    """The process-wide pool (a forked child gets its own; it never touches the parent's pipes)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = VerifierPool()
            atexit.register(_POOL.shutdown)
        return _POOL


def _after_fork_in_child() -> None:
    # The parent's workers stay the parent's: drop our copies of their pipes and start afresh.
    global _POOL, _POOL_LOCK
    old, _POOL, _POOL_LOCK = _POOL, None, threading.Lock()
    if old is not None:
        for w in old._idle:
            for f in (w.proc.stdin, w.proc.stdout) if w.proc is not None else ():
                try:
                    f.close()
                except Exception:
                    pass
            w.proc = None
        old._idle = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
