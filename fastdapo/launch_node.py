"""Per-node launcher: DeepSpeed's own (`deepspeed.launcher.launch`), plus a record of how each rank ended.

DeepSpeed's launcher stops every rank when one fails and exits with that rank's status wrapped to a
byte (-9 becomes 247), without saying which rank it was; by then the survivors have often printed
their own follow-on errors. Run through this module, each rank's process is watched by a thread that
notes when and how it ended, and the output of every rank but rank 0 (which keeps this console, and
its live progress bar) is copied, line by line, into RANK_LOG_DIR/rank<N>.log as well as to this
console. The records go to --report_file as JSON for `fastdapo launch`, which names the rank that
failed first. When the ranks have ended it unlinks the shared-memory workspaces of DeepSpeed's CPU
all-reduce that a rank killed early left behind.
Usage: python -m fastdapo.launch_node [--report_file=F] [--rank_log_dir=D] <DeepSpeed args>
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from fastdapo.runtime.distributed import shm_workspace_path

OPTIONS = ("--report_file=", "--rank_log_dir=")


class RankWatcher:
    """Stands in for the `subprocess` module inside DeepSpeed's launcher: its Popen starts a rank and
    watches it; every other attribute is the real module's."""

    def __init__(self, log_dir: str | None):
        self.log_dir = Path(log_dir) if log_dir else None
        self.records: list[dict] = []
        self.threads: list[threading.Thread] = []
        self.workspaces: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(subprocess, name)

    def Popen(self, cmd, env=None, **kwargs):  # noqa: N802 (the name DeepSpeed calls)
        rank = int((env or os.environ).get("RANK", -1))
        log = self.log_dir / f"rank{rank}.log" if self.log_dir and rank > 0 and "stdout" not in kwargs else None
        if log is not None:
            kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc = subprocess.Popen(cmd, env=env, **kwargs)
        record = {"rank": rank, "pid": proc.pid, "status": None, "ended": None, "log": str(log) if log else None}
        env = env or os.environ
        self.workspaces.append(shm_workspace_path(rank, env.get("MASTER_ADDR", ""), env.get("MASTER_PORT", "")))
        with self._lock:
            self.records.append(record)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("ab")  # appended: a resumed run's earlier launches stay readable
            out.write(f"=== fastdapo launch {time.strftime('%Y-%m-%d %H:%M:%S')}, pid {proc.pid} ===\n".encode())
            out.flush()
            record["log_start"] = out.tell()
            lock = threading.Lock()
            for src, dst in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
                self._start(_copy, src, dst, out, lock, f"[rank {rank}] ".encode())
        self._start(_watch, proc, record)
        return proc

    def _start(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def finish(self, report_file: str | None) -> None:
        for t in self.threads:
            t.join(timeout=5)
        for path in self.workspaces:  # left by a rank that ended before it released its own
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if report_file:
            Path(report_file).write_text(json.dumps(self.records))


def _copy(src, dst, log, lock: threading.Lock, prefix: bytes) -> None:
    """Every line of a rank's stream to the console (with its rank) and to its log file."""
    for line in iter(src.readline, b""):
        with lock:
            log.write(line)
            log.flush()
        try:
            dst.buffer.write(prefix + line)
            dst.flush()
        except (OSError, ValueError):
            pass


def _watch(proc: subprocess.Popen, record: dict) -> None:
    """How and when the rank ended, read without reaping it (DeepSpeed's launcher still polls and reaps)."""
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        status = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    except ChildProcessError:
        # Reaped first: by DeepSpeed's poll (the return code is set), or by psutil while DeepSpeed stops the ranks,
        # which leaves the status unknown (None). Popen.wait would report such a rank as exit code 0.
        status = proc.returncode
    record["ended"], record["status"] = time.time(), status


def main(argv: list[str]) -> int:
    ours = {}
    while argv and argv[0].startswith(OPTIONS):
        key, _, value = argv.pop(0).partition("=")
        ours[key] = value
    import deepspeed.launcher.launch as ds_launch

    watcher = RankWatcher(ours.get("--rank_log_dir"))
    ds_launch.subprocess = watcher  # DeepSpeed starts the ranks through subprocess.Popen
    sys.argv = [ds_launch.__file__, *argv]
    code = 0
    try:
        ds_launch.main()
    except SystemExit as e:  # DeepSpeed exits from its failure / signal handler
        code = e.code if isinstance(e.code, int) else 1
    finally:
        watcher.finish(ours.get("--report_file"))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
