"""A run with one update per rollout step skips the old-log-prob pass and still reports the policy stats."""

import json
import os
import subprocess
import sys


def test_single_update_per_step_skips_old_logprob_pass(tmp_path):
    sets = {
        "toy.hidden_size": 32,
        "toy.layers": 1,
        "toy.heads": 2,
        "toy.sft_steps": 30,
        "toy.cache_dir": str(tmp_path / "cache"),
        "toy.eval_size": 8,
        "rollout.n": 4,
        "rollout.max_response_length": 12,
        "rollout.eval_n": 1,
        "algorithm.overlong_buffer_len": 4,
        "algorithm.train_batch_size": 4,
        "algorithm.gen_batch_size": 4,
        "algorithm.mini_batch_size": 4,
        "algorithm.dynamic_sampling": "false",
        "run.steps": 2,
        "run.progress": "false",
        "run.save_every": 0,
        "run.output_dir": str(tmp_path / "run"),
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(steps) == 2
    for m in steps:
        assert m["time/old_logprobs"] == 0.0 and m["train/updates"] == 1
        assert m["entropy/mean"] > 0 and 0 < m["logprob/mean_prob"] <= 1
        assert m["clip_frac/low"] == m["clip_frac/high"] == m["clip_frac/dual"] == 0  # ratio is exactly 1
