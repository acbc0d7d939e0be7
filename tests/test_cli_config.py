"""`fastdapo train` with an invalid config exits within seconds, one line naming the key, before any model load."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ("algorithm.eps_low=1.0", "algorithm.eps_low"),
    ("rollout.temperature=0", "rollout.temperature"),
    ("algorithm.mini_batch_size=64", "algorithm.mini_batch_size"),
    ("algorithm.gen_batch_size=16", "algorithm.gen_batch_size"),
    ("rollout.n=1", "rollout.n"),
    ("algorithm.dual_clip=0.5", "algorithm.dual_clip"),
    ("optimizer.learning_rate=1", "optimizer.learning_rate"),
    ("model.path=", "model.path"),
    ("data.train_files=[no/such/file.parquet]", "data.train_files"),
]


def run_train(tmp_path, *sets):
    args = [sys.executable, "-m", "fastdapo.cli", "train", "--set", f"run.output_dir={tmp_path / 'run'}"]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("override, key", BAD, ids=[b[1] for b in BAD])
def test_invalid_value_exits_fast_with_one_line(tmp_path, override, key):
    proc, seconds = run_train(tmp_path, override)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert seconds < 10, f"took {seconds:.1f}s: validation must come before any model load"
    assert not (tmp_path / "run").exists()
