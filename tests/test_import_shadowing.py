"""Nothing in the repository root shadows an installed package: a Python started here (the root first on
sys.path) imports Hugging Face's `kernels`, which recent transformers releases import while loading any model,
and builds a model, with the newest transformers and kernels releases as well as the environment's own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEWEST = ROOT / ".cache" / "newest-transformers"  # `make test` installs it; built here when missing

PROBE = """
import kernels, transformers
from kernels import CUDAProperties  # what transformers' hub-kernels integration imports
import transformers.integrations.hub_kernels
from transformers import Qwen2Config, Qwen2ForCausalLM
import torch, fastdapo_kernels, fastdapo_bench, fastdapo
cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
logits = Qwen2ForCausalLM(cfg)(torch.tensor([[1, 2, 3]])).logits
assert logits.shape == (1, 3, 64)
print("kernels", kernels.__file__)
print("transformers", transformers.__version__, transformers.__file__)
print("ours", fastdapo_kernels.__file__, fastdapo_bench.__file__)
"""


def newest_overlay() -> Path:
    """The newest transformers and kernels from the index, laid over the environment (deps not upgraded:
    a GPU user's environment has vLLM's pins too)."""
    if not (NEWEST / "transformers").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(NEWEST)]
        subprocess.run([*cmd, "transformers", "kernels"], check=True, capture_output=True, timeout=600)
    return NEWEST


def probe(extra_path: Path | None) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(extra_path or ""), os.environ.get("PYTHONPATH")) if p),
    }
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("libs", ["environment", "newest"])
def test_a_python_started_in_the_root_loads_models(libs):
    overlay = newest_overlay() if libs == "newest" else None
    out = probe(overlay)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert not lines["kernels"].startswith(str(ROOT / "kernels")), lines["kernels"]  # Hugging Face's package
    assert lines["ours"].startswith(str(ROOT / "kernels" / "fastdapo_kernels"))
    if overlay:
        assert lines["transformers"].split(" ", 1)[1].startswith(str(overlay))
