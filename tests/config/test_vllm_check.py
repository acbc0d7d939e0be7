"""rollout.engine=vllm settings the installed vLLM cannot run are refused at load, in one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastdapo.config.vllm_check import vllm_setting_error

ROOT = Path(__file__).resolve().parents[2]


def test_per_prompt_seeds_refused_on_cpu_only():
    assert "rollout.seed_per_prompt" in vllm_setting_error(True, platform="cpu")
    assert vllm_setting_error(True, platform="cuda") is None
    assert vllm_setting_error(False, platform="cpu") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for CPU vLLM; CUDA vLLM takes per-prompt seeds")
def test_train_refuses_per_prompt_seeds_with_one_line(tmp_path):
    args = [
        sys.executable,
        "-m",
        "fastdapo.cli",
        "train",
        "--set",
        f"run.output_dir={tmp_path / 'run'}",
        "--set",
        "rollout.engine=vllm",
        "--set",
        "rollout.seed_per_prompt=true",
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and "rollout.seed_per_prompt" in lines[0] and "vLLM on CPU" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()
