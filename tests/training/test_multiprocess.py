"""Data-parallel DAPO through the real DeepSpeed launcher on CPU (gloo)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toy_run import TINY, args, assert_same_trajectory, assert_same_weights, cli, env, final_weights, free_port, metrics


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process reference run (also builds the cached tiny warm start)."""
    root = tmp_path_factory.mktemp("mp")
    cache, out = root / "cache", root / "single"
    proc = cli("train", *args(out, cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, cache, metrics(out), final_weights(out)


@pytest.mark.parametrize("stage", [2, 3])
def test_two_processes_reproduce_one(single, stage):
    root, cache, ref, ref_weights = single
    out = root / f"two-z{stage}"
    proc = cli(
        "launch",
        "--num-procs",
        "2",
        "--master-port",
        str(free_port()),
        *args(out, cache, **{"distributed.zero_stage": stage}),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = metrics(out)
    assert len(got) == TINY["run.steps"] and any(m["loss"] != 0 for m in got)
    assert_same_trajectory(got, ref)
    assert_same_weights(final_weights(out), ref_weights)


def test_simulated_two_node_run(single):
    root, cache, ref, _ = single
    out, port = root / "two-node", free_port()
    common = ["--nnodes", "2", "--num-procs", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "fastdapo.cli", "launch", *common, "--node-rank", str(r), *args(out, cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=400)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert_same_trajectory(metrics(out), ref)


def _rank_pid(marker: str, rank: int):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmd and " train " in cmd and f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def test_dead_rank_stops_the_job_with_a_clear_error(single):
    root, cache, _, _ = single
    out = root / "dead"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastdapo.cli",
            "launch",
            "--num-procs",
            "2",
            "--master-port",
            str(free_port()),
            *args(out, cache, **{"run.steps": 200}),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    try:
        deadline = time.time() + 300
        while not ((out / "metrics.jsonl").exists() and metrics(out)) and time.time() < deadline:
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            time.sleep(1)
        victim = _rank_pid(str(out), 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        t0 = time.time()
        log = launcher.communicate(timeout=120)[0]
        assert time.time() - t0 < 120
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    # the killed rank is named with its signal and its log; the survivor's error is labelled
    assert f"rank 1 (pid {victim}) failed first: killed by SIGKILL; " in log, log[-3000:]
    assert str(out / "logs" / "rank1.log") in log
    assert "after rank 1 failed: " in log  # rank 0: a follow-on error, or stopped by the launcher
    assert "Error: rank 1 failed first (killed by SIGKILL)" in log
