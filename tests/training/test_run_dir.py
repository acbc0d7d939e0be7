"""One run per run directory, and a run directory that cannot be used is refused in one line before the
model loads: the run lock (held, left by a killed process, taken over) and unusable run.output_dir values."""

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastdapo.runtime.run_lock import LOCK_NAME, RunDirError, RunLock
from tests.training.test_resume import TIMEOUT, env, train_cmd

HOLD = "import sys, time; from fastdapo.runtime.run_lock import RunLock; RunLock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"  # noqa: E501


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path/run (as a running `fastdapo train` does)."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout.readline().strip() == "held"
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def tree(run_dir: Path) -> dict[str, bytes]:
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in sorted(run_dir.rglob("*")) if f.is_file()}


def test_a_held_run_dir_is_refused_naming_directory_host_and_pid(holder):
    run_dir, proc = holder
    with pytest.raises(RunDirError) as e:
        RunLock.acquire(run_dir)
    assert str(e.value).startswith(f"run.output_dir {run_dir} is in use by process {proc.pid} on host ")
    assert socket.gethostname() in str(e.value) and "\n" not in str(e.value)


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_log_line(holder, caplog):
    run_dir, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / LOCK_NAME).exists()  # kill -9 ran no clean-up
    with caplog.at_level(logging.WARNING), RunLock.acquire(run_dir):
        assert f"took over the lock left by process {proc.pid} on host {socket.gethostname()}" in caplog.text
        with pytest.raises(RunDirError):  # and holds it now
            RunLock.acquire(run_dir)
    assert not (run_dir / LOCK_NAME).exists()  # a clean release leaves nothing behind
    RunLock.acquire(run_dir).release()


FORK_AND_DIE = (
    "import os, signal, sys, time; from fastdapo.runtime.run_lock import RunLock; RunLock.acquire(sys.argv[1])\n"
    "if os.fork() == 0: time.sleep(20); os._exit(0)\n"
    "os.kill(os.getpid(), signal.SIGKILL)"
)


def test_a_child_forked_by_the_holder_does_not_keep_the_lock_after_the_holder_dies(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FORK_AND_DIE, str(run_dir)], env=env(), timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    RunLock.acquire(run_dir).release()  # the forked child still runs, without the lock


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/proc/forbidden", "run.output_dir /proc/forbidden cannot be created: "),
        ("FILE", r"run.output_dir .*/f is a file, not a directory$"),
        ("FILE/run", r"run.output_dir .*/f/run cannot be created: .*/f is a file, not a directory$"),
    ],
)
def test_an_unusable_output_dir_is_one_line(tmp_path, path, expected):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match=expected) as e:
        RunLock.acquire(Path(path.replace("FILE", str(tmp_path / "f"))))
    assert "\n" not in str(e.value)


def refused(cmd, cache: Path) -> str:
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not cache.exists()  # refused before the (toy) model was built or loaded
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("target", ["proc", "file"])
def test_train_refuses_an_unusable_output_dir_before_loading_the_model(tmp_path, target):
    out = Path("/proc/forbidden") if target == "proc" else tmp_path / "taken"
    if target == "file":
        out.write_text("not a directory")
    last = refused(train_cmd(out, tmp_path / "cache"), tmp_path / "cache")
    assert last.startswith(f"Error: run.output_dir {out} "), last


def test_a_second_train_on_a_run_dir_in_use_is_refused_and_writes_nothing(holder, tmp_path):
    run_dir, proc = holder
    (run_dir / "metrics.jsonl").write_text('{"step": 0}\n')
    before = tree(run_dir)
    last = refused(train_cmd(run_dir, tmp_path / "cache"), tmp_path / "cache")
    assert last.startswith(f"Error: run.output_dir {run_dir} is in use by process {proc.pid} on host "), last
    assert tree(run_dir) == before


def test_launch_refuses_a_run_dir_in_use_before_starting_any_rank(holder, tmp_path):
    run_dir, proc = holder
    cmd = [sys.executable, "-m", "fastdapo.cli", "launch", "--num-procs", "2", "--set", f"run.output_dir={run_dir}"]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1].startswith(f"Error: run.output_dir {run_dir} is in use by process ")
    assert "deepspeed" not in res.stdout  # no rank was started
