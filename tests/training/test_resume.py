"""End to end, through the CLI in subprocesses: a run killed and resumed ends exactly where an
uninterrupted one does; SIGTERM leaves a usable checkpoint and a clean exit; a damaged checkpoint is
skipped for the previous one; a run directory exports / evaluates as a Hugging Face model."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastdapo.checkpoint import store as C

STEPS = 4
TIMEOUT = 300


def tiny_overrides(cache: Path, steps: int = STEPS, save_every: int = 1) -> list[str]:
    sets = {
        "toy.sft_steps": 20,
        "toy.hidden_size": 32,
        "toy.cache_dir": cache,
        "toy.eval_size": 2,
        "rollout.eval_n": 2,
        "rollout.n": 8,
        "rollout.max_response_length": 16,
        "algorithm.overlong_buffer_len": 2,
        "algorithm.train_batch_size": 2,
        "algorithm.gen_batch_size": 2,
        "algorithm.mini_batch_size": 1,
        "algorithm.dynamic_sampling": "false",
        "run.steps": steps,
        "run.save_every": save_every,
        "run.keep_last": 10,
        "run.log_samples_every": 2,
        "run.progress": "false",
    }
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def train_cmd(run_dir: Path, cache: Path, *extra: str, steps: int = STEPS, save_every: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fastdapo.cli",
        "train",
        *tiny_overrides(cache, steps, save_every),
        "--set",
        f"run.output_dir={run_dir}",
        *extra,
    ]


_DIST_VARS = {
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "CROSS_RANK",
    "CROSS_SIZE",
    "GROUP_RANK",
}


def env() -> dict:
    """A clean single-process environment (tests that ran in this process may have set up a process group)."""
    base = {k: v for k, v in os.environ.items() if k not in _DIST_VARS}
    return {**base, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd) -> str:
    """Runs to completion; the log with rich's line wrapping undone."""
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return unwrap(proc.stderr)


def unwrap(log: str) -> str:
    return " ".join(log.split())


def resumed_from(log: str) -> str:
    return Path(log.split("resumed from ", 1)[1].split()[0]).name


def start(cmd, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=log.open("w"))


def wait_for(cond, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        assert proc.poll() is None, f"the run ended (rc={proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)  # a step takes well under 0.1 s: the kill must land inside the next one


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without wall-clock numbers."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def weights(ckpt: Path) -> dict:
    return torch.load(ckpt / "engine" / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """The uninterrupted run, a checkpoint after every step."""
    run_dir = tmp_path_factory.mktemp("reference")
    run(train_cmd(run_dir, cache))
    return run_dir


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, cache, reference):
    """The same run checkpointing every 2 steps, SIGKILLed once step 3 is logged (the step-2 checkpoint
    is the latest), then resumed with --resume auto."""
    run_dir = tmp_path_factory.mktemp("killed")
    proc = start(train_cmd(run_dir, cache, save_every=2), run_dir / "killed.log")
    try:
        wait_for(lambda: 3 in steps_logged(run_dir), proc, "step 3")
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    logged_before = steps_logged(run_dir)
    assert logged_before == [0, 1, 2, 3], "the kill came too late to test anything"
    assert [s for s, _ in C.list_checkpoints(run_dir / "checkpoints")] == [2]
    return run_dir, run(train_cmd(run_dir, cache, "--resume", "auto", save_every=2))


def test_sigkill_and_resume_matches_the_uninterrupted_run(reference, resumed):
    run_dir, log = resumed
    assert resumed_from(log) == C.step_dir_name(2)
    assert "took over the lock left by process" in log  # kill -9 left the lock file; no clean-up was needed
    assert steps_logged(run_dir) == list(range(STEPS + 1))  # step 3, logged before the kill, is not duplicated
    assert metrics(run_dir) == metrics(reference)  # every step, including those after the kill
    assert_same_weights(
        run_dir / "checkpoints" / C.step_dir_name(STEPS), reference / "checkpoints" / C.step_dir_name(STEPS)
    )
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted({s["step"] for s in samples}) == [2, 4]
    assert samples == [json.loads(line) for line in (reference / "samples.jsonl").read_text().splitlines()]


def test_truncated_checkpoint_is_skipped_for_the_previous_one(tmp_path, cache, reference, resumed):
    run_dir = tmp_path / "run"
    shutil.copytree(resumed[0], run_dir)
    newest = run_dir / "checkpoints" / C.step_dir_name(STEPS)
    optim = next((newest / "engine").glob("*optim_states.pt"))
    optim.write_bytes(optim.read_bytes()[: optim.stat().st_size // 2])
    (newest.parent / C.step_dir_name(STEPS - 1)).mkdir()  # a checkpoint dir left without manifest
    log = run(train_cmd(run_dir, cache, "--resume", "auto", save_every=2))
    assert "unusable" in log and "truncated" in log and "no manifest.json" in log
    assert resumed_from(log) == C.step_dir_name(2)
    assert metrics(run_dir) == metrics(reference)
    assert C.problem(newest) is None  # step STEPS was written again, whole
    assert_same_weights(newest, reference / "checkpoints" / C.step_dir_name(STEPS))


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, cache, reference):
    """No periodic checkpoints: the one written on SIGTERM is the step in flight (finished) or the
    previous one (the step in flight abandoned before its update)."""
    from transformers import AutoModelForCausalLM

    from fastdapo.export import export_checkpoint

    run_dir = tmp_path / "run"
    proc = start(train_cmd(run_dir, cache, steps=50, save_every=100), tmp_path / "train.log")
    try:
        wait_for(lambda: any(s >= 1 for s in steps_logged(run_dir)), proc, "step 1")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = unwrap((tmp_path / "train.log").read_text())
    assert rc == 0, log[-4000:]
    assert "SIGTERM received" in log and "stopped by SIGTERM" in log
    ckpt = C.resolve(run_dir)
    step = C.read_manifest(ckpt)["step"]
    assert 1 <= step <= STEPS, "the run went on too long after SIGTERM"
    assert steps_logged(run_dir)[-1] == step  # metrics and checkpoint agree
    assert_same_weights(ckpt, reference / "checkpoints" / C.step_dir_name(step))
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    export_checkpoint(run_dir, tmp_path / "hf")
    AutoModelForCausalLM.from_pretrained(tmp_path / "hf")


ABANDON_DRIVER = """
import os, signal, sys
import fastdapo.training.trainer as T
from fastdapo.config import load_config

calls = []
def rollout_then_signal(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:           # during step 2's rollout
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
real, T.generate_and_score = T.generate_and_score, rollout_then_signal
result = T.train(load_config(None, [a for a in sys.argv[1:] if a != "--set"]))
print("stopped_by", result["stopped_by"])
"""


def test_step_abandoned_on_sigterm_is_replayed_exactly(tmp_path, cache, reference):
    """SIGTERM during a rollout: the step is dropped before the weights change, the previous step is
    checkpointed with the state from before the dropped one, and the resumed run redoes it exactly."""
    run_dir = tmp_path / "run"
    args = tiny_overrides(cache, STEPS, save_every=100) + ["--set", f"run.output_dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "-c", ABANDON_DRIVER, *args], env=env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    log = unwrap(proc.stderr)
    assert proc.returncode == 0 and "stopped_by SIGTERM" in proc.stdout, log[-4000:]
    assert "step 2 abandoned before its update" in log
    assert steps_logged(run_dir) == [0, 1]
    assert [s for s, _ in C.list_checkpoints(run_dir / "checkpoints")] == [1]
    log = run(train_cmd(run_dir, cache, "--resume", "auto", save_every=100))
    assert resumed_from(log) == C.step_dir_name(1)
    assert metrics(run_dir) == metrics(reference)
    assert_same_weights(C.resolve(run_dir), reference / "checkpoints" / C.step_dir_name(STEPS))


def test_eval_takes_a_run_directory(reference):
    from fastdapo.evaluation.cli import load_model_for_eval

    model, tokenizer = load_model_for_eval(reference, device="cpu", dtype="float32")
    saved = weights(reference / "checkpoints" / C.step_dir_name(STEPS))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved["model." + k]), k
    assert tokenizer.padding_side == "left"


def test_export_command_and_keep_last(tmp_path, reference):
    from click.testing import CliRunner

    from fastdapo.cli import main

    res = CliRunner().invoke(main, ["export", str(reference), "--step", "2", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "hf" / "fastdapo_export.json").read_text())["step"] == 2
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "tokenizer.json").exists()
    res = CliRunner().invoke(main, ["export", str(reference), "--step", "99", str(tmp_path / "none")])
    assert res.exit_code != 0 and "no checkpoint for step 99" in res.output
    assert [s for s, _ in C.list_checkpoints(reference / "checkpoints")] == list(range(1, STEPS + 1))
