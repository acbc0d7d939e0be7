"""Data-parallel DAPO through the real DeepSpeed launcher on CPU (gloo)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = {
    "toy.hidden_size": 32,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 30,
    "toy.eval_size": 16,
    "rollout.n": 4,
    "rollout.max_response_length": 12,
    "rollout.eval_n": 1,
    "algorithm.overlong_buffer_len": 4,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 4,
    "algorithm.mini_batch_size": 2,
    "algorithm.dynamic_sampling": "false",
    "algorithm.max_tokens_per_micro_batch": 64,
    "rollout.seed_per_prompt": "true",
    "run.steps": 3,
    "run.progress": "false",
    "run.save_every": 3,
}
COMPARED = ("loss", "grad_norm", "reward/mean", "acc/mean", "entropy/mean", "clip_frac/low", "clip_frac/high")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(out: Path, cache: Path, **extra):
    opts = {**TINY, "toy.cache_dir": str(cache), "run.output_dir": str(out), **extra}
    return [a for k, v in opts.items() for a in ("--set", f"{k}={v}")]


def env():
    return {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}


def cli(*a, timeout=400):
    return subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", *a], capture_output=True, text=True, env=env(), timeout=timeout
    )


def metrics(run: Path):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    from fastdapo.export import export_checkpoint

    out = run.parent / f"{run.name}-export"
    export_checkpoint(run, out)
    weights = {}
    for f in sorted(out.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    return weights


def assert_same_weights(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys() and a
    for k in a:
        assert (a[k].float() - b[k].float()).abs().max() <= atol, k


def assert_same_trajectory(a, b, rel=1e-4):
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for x, y in zip(a, b):
        for k in COMPARED:
            assert x[k] == pytest.approx(y[k], rel=rel, abs=1e-6), (k, x["step"], x[k], y[k])


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
