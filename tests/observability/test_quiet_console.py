"""A first toy run prints fastdapo's log and bars only: no library progress bars, no DeepSpeed print()s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "toy.hidden_size": 32,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 20,
    "toy.eval_size": 8,
    "rollout.n": 4,
    "rollout.max_response_length": 12,
    "rollout.eval_n": 1,
    "algorithm.overlong_buffer_len": 4,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 4,
    "algorithm.mini_batch_size": 4,
    "algorithm.dynamic_sampling": "false",
    "run.steps": 1,
    "run.save_every": 0,
}
FOREIGN = re.compile(r"it/s\]|s/it\]|Loading weights|Writing model shards|built successfully|Warning|warnings\.warn")


def test_first_run_shows_only_fastdapo_output(tmp_path):
    sets = {**TINY, "toy.cache_dir": str(tmp_path / "cache"), "run.output_dir": str(tmp_path / "run")}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(DS_ACCELERATOR="cpu", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [ln for ln in proc.stdout.splitlines() if ln.startswith("accuracy before")]
    assert not FOREIGN.search(proc.stderr), proc.stderr
    assert "warm-starting the toy model (20 supervised steps" in proc.stderr
    assert re.search(r"warm start .* 20/20 .* loss \d", proc.stderr), proc.stderr  # the bar's final state
    assert re.search(r"DAPO .* 1/1 ", proc.stderr), proc.stderr
