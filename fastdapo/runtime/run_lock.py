"""One process at a time per run directory: a lock file inside it, held with `flock`.

The kernel drops a `flock` when its holder dies, however it dies (kill -9 included), so a directory is
never left locked by a dead run; the holder's host and PID are written into the file only to name it
in the refusal, and to say which run a taken-over lock came from. Multi-process runs take the lock
once, on the main rank. Taking the lock is also the check that RUN_DIR can be created and written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".fastdapo.lock"
_BUSY = (errno.EAGAIN, errno.EACCES)
_HELD: set[int] = set()  # this process's lock descriptors


def _close_in_forked_child() -> None:
    # A forked child shares the lock; closing its copy keeps the lock's life tied to the holder alone.
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


class RunDirError(RuntimeError):
    """run.output_dir cannot be used (not creatable or writable, or in use); the message is one line."""


def prepare_run_dir(run_dir: Path) -> Path:
    """Create RUN_DIR (and its parents); one-line RunDirError when it is a file or cannot be created."""
    run_dir = Path(run_dir)
    blocker = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = "is a file" if blocker == run_dir else f"cannot be created: {blocker} is a file"
        raise RunDirError(f"run.output_dir {run_dir} {what}, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"run.output_dir {run_dir} cannot be created: {e.strerror or e}") from None
    return run_dir


def _holder_text(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if "started" in info else "?"
    return f"process {info.get('pid', '?')} on host {info.get('host', '?')} (started {started})"


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _holder_gone(info: dict) -> bool:
    """The file names a process on this host that no longer exists (another host's cannot be checked)."""
    if not info.get("pid") or info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


class RunLock:
    """The lock on one run directory; `release()` (or leaving the `with` block) gives it up."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir, self.path, self.fd = Path(run_dir), Path(run_dir) / LOCK_NAME, fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Create RUN_DIR if needed and lock it, or raise RunDirError naming the directory and its holder."""
        run_dir = prepare_run_dir(run_dir)
        path = run_dir / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RunDirError(f"run.output_dir {run_dir} is not writable: {e.strerror or e}") from None
            previous = _lock_or_refuse(fd, run_dir)
            # The holder before us may have removed the file on release: lock the file that is there now.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        if previous.get("pid"):
            log.warning(
                "run.output_dir %s: took over the lock left by %s, which is gone", run_dir, _holder_text(previous)
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        _HELD.add(fd)
        return cls(run_dir, fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            self.path.unlink()  # removed while still held: a waiting process re-checks the inode
        except OSError:
            pass
        _HELD.discard(self.fd)
        os.close(self.fd)  # closing drops the flock
        self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_or_refuse(fd: int, run_dir: Path) -> dict:
    """Lock `fd`; returns what the file said before (a holder that died), or raises RunDirError if held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        info = _read(fd)
        gone = _holder_gone(info)
        if e.errno not in _BUSY and (gone or not info.get("pid") or info.get("host") != socket.gethostname()):
            return info  # a file system without flock: judged by the PID the file names
        os.close(fd)
        holder = _holder_text(info) if info.get("pid") else "another process"
        if gone:
            holder = f"a process left over from {holder}, which is gone"  # e.g. a child it started
        raise RunDirError(f"run.output_dir {run_dir} is in use by {holder}") from None
    return _read(fd)


def check_run_dir_free(run_dir: Path) -> None:
    """For a launcher: RunDirError now if RUN_DIR is unusable or in use (its main rank takes the lock itself)."""
    RunLock.acquire(run_dir).release()
