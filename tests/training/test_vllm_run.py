"""`fastdapo train` with rollout.engine=vllm: a seeded run is reproducible, evaluation included; with two
processes each rank's engine follows the actor's updates."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("vllm")

# head size 32: the smallest vLLM's CPU attention runs
TINY = {
    "toy.hidden_size": 64,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 30,
    "toy.eval_size": 8,
    "rollout.engine": "vllm",
    "rollout.n": 4,
    "rollout.max_response_length": 12,
    "rollout.eval_n": 2,
    "algorithm.overlong_buffer_len": 4,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 4,
    "algorithm.mini_batch_size": 2,
    "algorithm.dynamic_sampling": "false",
    "run.steps": 2,
    "run.progress": "false",
    "run.save_every": 0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(root, name: str, procs: int = 1, **extra) -> list[dict]:
    sets = {**TINY, "toy.cache_dir": str(root / "cache"), "run.output_dir": str(root / name), **extra}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["train"] if procs == 1 else ["launch", "--num-procs", str(procs), "--master-port", str(free_port())]
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", *cmd, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    # wall-clock timings differ between any two runs; everything else must not
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A one-process run; it also builds the cached warm start the other runs share."""
    root = tmp_path_factory.mktemp("vllm-run")
    return root, run(root, "a")


def test_seeded_vllm_run_is_reproducible(first):
    root, first = first
    second = run(root, "b")
    assert [r["step"] for r in first] == [0, 1, 2]
    assert "eval/acc" in first[0] and "eval/acc" in first[-1]
    assert first[1]["loss"] != first[2]["loss"]  # the second step sampled from updated weights
    assert first == second


def test_two_ranks_each_drive_an_engine_that_follows_the_actor(first):
    rows = run(first[0], "two", procs=2)
    assert [r["step"] for r in rows] == [0, 1, 2] and "eval/acc" in rows[-1]
    # step 2 samples from weights synced after step 1's update; the max is over both ranks' tokens
    assert rows[1]["loss"] != rows[2]["loss"]
    assert rows[2]["rollout_corr/logp_abs_diff_max"] <= 1e-4


def test_resumed_run_samples_from_the_restored_weights(first):
    rows = run(first[0], "a", **{"run.steps": 3})  # resumes the first run from its step-2 checkpoint
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    # the engine was built from the initial weights; step 3 must sample from the trained ones
    assert rows[3]["rollout_corr/logp_abs_diff_max"] <= 1e-4


def test_lora_run_syncs_merged_adapters_into_vllm(first):
    """The engine samples from base + adapters: after the first update its log-probs still equal the actor's."""
    rows = run(first[0], "lora", **{"model.lora.rank": 8, "model.lora.alpha": 16, "optimizer.lr": 0.01})
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[1]["loss"] != rows[2]["loss"]
    # step 2's rollouts come from the weights synced after step 1's update (adapters non-zero by then)
    assert rows[2]["rollout_corr/logp_abs_diff_max"] < 1e-4, rows[2]


def test_async_vllm_generator_follows_the_actor_exactly(first):
    """rollout.max_staleness=1 with a vLLM generator process: one step behind, and a resumed run's first step
    (staleness 0, trained weights the generator did not load from disk) samples from the actor's weights."""
    settings = {"rollout.max_staleness": 1, "run.save_every": 1, "run.steps": 1}
    run(first[0], "async", **settings)
    rows = run(first[0], "async", **{**settings, "run.steps": 3, "run.resume": "auto"})
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["async/staleness_max"] == 0 and rows[3]["async/staleness_max"] == 1
    assert rows[2]["rollout_corr/logp_abs_diff_max"] <= 1e-4, rows[2]
