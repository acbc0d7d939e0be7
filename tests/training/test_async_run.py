"""Asynchronous rollouts end to end: a generator process samples while the actor trains (rollout.max_staleness)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from toy_run import TINY, args, cli, env, free_port, metrics

from fastdapo.checkpoint import store as C

ASYNC = {"rollout.max_staleness": 1}
B = TINY["algorithm.train_batch_size"]  # prompts per step: dynamic sampling is off in TINY, one request a step


def generator_pid(text: str) -> int:
    found = re.findall(r"generator process \(pid (\d+)", text)
    assert found, text[-3000:]
    return int(found[-1])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie: ended, not yet reaped


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("async-cache")


def test_async_run_trains_with_bounded_staleness_and_leaves_no_process(tmp_path, cache):
    out = tmp_path / "run"
    proc = cli("train", *args(out, cache, **ASYNC, **{"run.steps": 4}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = metrics(out)
    assert [m["step"] for m in got] == [1, 2, 3, 4]
    assert all(m["async/staleness_max"] <= 1 and m["async/dropped_stale"] == 0 for m in got)
    assert [m["async/staleness_mean"] for m in got][1:] == [1.0, 1.0, 1.0]  # one step behind, as designed
    assert all(m["rollout_corr/is_weight_mean"] > 0 and m["grad_norm"] == m["grad_norm"] for m in got)
    assert all(key in got[-1] for key in ("async/actor_wait_s", "async/generator_wait_s", "async/weight_transfer_s"))
    assert gone(generator_pid(proc.stderr + proc.stdout))


def test_sigterm_checkpoints_the_trained_stream_position_and_resumes(tmp_path, cache):
    out, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [sys.executable, "-m", "fastdapo.cli", "train", *args(out, cache, **ASYNC, **{"run.steps": 50})]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env())
    try:
        deadline = time.time() + 300
        while not ((out / "metrics.jsonl").exists() and metrics(out)) and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "stopped by SIGTERM" in text and gone(generator_pid(text))
    ckpt = C.resolve(out)
    step = C.read_manifest(ckpt)["step"]
    state = torch.load(ckpt / C.state_file(0), weights_only=False)
    # a request was in flight (generated ahead): its prompts are not counted as consumed
    assert state["components"]["stream"]["consumed"] == step * B, (step, state["components"]["stream"])
    more = cli("train", *args(out, cache, **ASYNC, **{"run.steps": step + 1}), "--resume", "auto")
    assert more.returncode == 0, more.stderr[-3000:]
    assert [m["step"] for m in metrics(out)][-1] == step + 1


def test_a_dead_generator_ends_the_run_in_one_line(tmp_path, cache):
    out, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [sys.executable, "-m", "fastdapo.cli", "train", *args(out, cache, **ASYNC, **{"run.steps": 50})]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env())
    try:
        deadline = time.time() + 300
        while "generator process (pid" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        pid = generator_pid(log.read_text())
        time.sleep(3)
        os.kill(pid, signal.SIGKILL)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc != 0
    assert f"Error: rollout generator process (pid {pid}) ended: killed by SIGKILL" in text, text[-3000:]
    assert "Traceback" not in text


def test_two_processes_with_their_generators(tmp_path, cache):
    out = tmp_path / "run"
    proc = cli("launch", "--num-procs", "2", "--master-port", str(free_port()),
               *args(out, cache, **ASYNC, **{"run.steps": 3}))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = metrics(out)
    assert [m["step"] for m in got] == [1, 2, 3] and all(m["async/staleness_max"] <= 1 for m in got)
    pids = [int(p) for p in re.findall(r"generator process \(pid (\d+)", proc.stdout + proc.stderr)]
    assert pids and all(gone(p) for p in pids)


@pytest.mark.parametrize("stage", [2, 3])
def test_the_generator_samples_from_the_actor_weights_exactly(tmp_path, cache, stage):
    """A resumed run's first step trains on samples of its version 0 (staleness 0), which are trained weights,
    not the ones on disk the generator loaded: the engine's log-probs of the sampled tokens must equal the
    actor's own (the transfer is exact, ZeRO-3's gathering included)."""
    out = tmp_path / "run"
    settings = {**ASYNC, "distributed.zero_stage": stage, "run.save_every": 1}
    first = cli("train", *args(out, cache, **settings, **{"run.steps": 1}))
    assert first.returncode == 0, first.stderr[-3000:]
    more = cli("train", *args(out, cache, **settings, **{"run.steps": 2}), "--resume", "auto")
    assert more.returncode == 0, more.stderr[-3000:]
    step2 = metrics(out)[-1]
    assert step2["step"] == 2 and step2["async/staleness_max"] == 0
    assert step2["rollout_corr/logp_abs_diff_max"] <= 1e-5, step2["rollout_corr/logp_abs_diff_max"]


def test_a_killed_trainer_takes_its_generator_along(tmp_path, cache):
    out, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [sys.executable, "-m", "fastdapo.cli", "train", *args(out, cache, **ASYNC, **{"run.steps": 50})]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env())
    try:
        deadline = time.time() + 300
        while "generator process (pid" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        pid = generator_pid(log.read_text())
        proc.kill()
        proc.wait(30)
        deadline = time.time() + 30
        while not gone(pid) and time.time() < deadline:
            time.sleep(0.2)
        assert gone(pid), f"generator {pid} outlived its trainer"
    finally:
        if proc.poll() is None:
            proc.kill()
