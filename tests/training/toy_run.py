"""Settings and helpers shared by the end-to-end runs of the tiny toy model (one CLI process per run)."""

import json
import os
import socket
import subprocess
import sys
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
