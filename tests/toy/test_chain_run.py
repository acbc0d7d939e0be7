"""The chain task end to end: a tiny warm start builds (with its progress bar) and a 2-step DAPO run trains on it."""

import json
import os
import subprocess
import sys

TINY_CHAIN = {
    "toy.task": "chain",
    "toy.chain_max_steps": 4,
    "toy.chain_problems": 64,
    "toy.eval_size": 8,
    "toy.hidden_size": 16,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 5,
    "rollout.n": 4,
    "rollout.max_response_length": 40,
    "rollout.eval_n": 1,
    "algorithm.overlong_buffer_len": 8,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 4,
    "algorithm.mini_batch_size": 2,
    "algorithm.dynamic_sampling": "false",
    "algorithm.max_tokens_per_micro_batch": 256,
    "run.steps": 2,
    "run.save_every": 0,
    "run.log_samples_every": 1,
}


def test_tiny_chain_warm_start_builds_and_trains(tmp_path):
    opts = {**TINY_CHAIN, "toy.cache_dir": str(tmp_path / "cache"), "run.output_dir": str(tmp_path / "run")}
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *[a for k, v in opts.items() for a in ("--set", f"{k}={v}")]],
        capture_output=True,
        text=True,
        env={**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "warm-starting the toy model (5 supervised steps" in proc.stderr and "warm start" in proc.stderr
    assert [p.name.startswith("toy-") for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == [True]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in rows if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    assert all(m["response_length/max"] <= 40 for m in steps)
    samples = (tmp_path / "run" / "samples.jsonl").read_text()
    assert "Start at " in samples and "times. End with Answer: N" in samples  # the chain task's prompts


def test_a_chain_that_cannot_fit_is_refused_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", "--set", "toy.task=chain", "--set", "toy.chain_max_steps=40"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [
        "Error: toy.chain_max_steps: 40 needs 546 positions (prompt and worked response), above the toy model's "
        "512; at most 37 fit"
    ]
