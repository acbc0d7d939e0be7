"""`fastdapo train` with rollout.engine=vllm: a seeded run is reproducible, evaluation included."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("vllm")

# head size 32: the smallest vLLM's CPU attention runs
TINY = {"toy.hidden_size": 64, "toy.layers": 1, "toy.heads": 2, "toy.sft_steps": 30, "toy.eval_size": 8,
        "rollout.engine": "vllm", "rollout.n": 4, "rollout.max_response_length": 12, "rollout.eval_n": 2,
        "algorithm.overlong_buffer_len": 4, "algorithm.train_batch_size": 4, "algorithm.gen_batch_size": 4,
        "algorithm.mini_batch_size": 2, "algorithm.dynamic_sampling": "false", "run.steps": 2,
        "run.progress": "false", "run.save_every": 0}


def run(tmp_path, name: str) -> list[dict]:
    sets = {**TINY, "toy.cache_dir": str(tmp_path / "cache"), "run.output_dir": str(tmp_path / name)}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "fastdapo.cli", "train", *args], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    # wall-clock timings differ between any two runs; everything else must not
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def test_seeded_vllm_run_is_reproducible(tmp_path):
    first, second = run(tmp_path, "a"), run(tmp_path, "b")
    assert [r["step"] for r in first] == [0, 1, 2]
    assert "eval/acc" in first[0] and "eval/acc" in first[-1]
    assert first[1]["loss"] != first[2]["loss"]  # the second step sampled from updated weights
    assert first == second
