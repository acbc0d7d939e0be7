"""LoRA runs end to end through the CLI: ZeRO-2 and ZeRO-3 train only the adapters, a resumed run ends exactly
where an uninterrupted one does, and the export loads in PEFT and in transformers with the same logits."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastdapo.checkpoint import store as C

TIMEOUT = 300
LORA = {"model.lora.rank": 4, "model.lora.alpha": 8, "optimizer.lr": 1e-2}


def overrides(cache: Path, run_dir: Path, steps: int, **extra) -> list[str]:
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
        "run.save_every": 1,
        "run.keep_last": 10,
        "run.progress": "false",
        "run.output_dir": run_dir,
        **LORA,
        **extra,
    }
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def run_cli(cache: Path, run_dir: Path, steps: int, **extra) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
    }
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *overrides(cache, run_dir, steps, **extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def train(cache: Path, run_dir: Path, steps: int, **extra) -> str:
    proc = run_cli(cache, run_dir, steps, **extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return " ".join(proc.stderr.split())


def module_state(ckpt: Path) -> dict:
    return torch.load(ckpt / "engine" / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-cache")


@pytest.fixture(scope="module")
def zero2(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("zero2")
    train(cache, run_dir, 3, **{"distributed.zero_stage": 2})
    return run_dir


def test_zero2_trains_only_the_adapters(zero2):
    first, last = (module_state(zero2 / "checkpoints" / C.step_dir_name(s)) for s in (1, 3))
    lora = [k for k in first if ".lora_" in k]
    assert lora and any(k.endswith("lm_head.weight") or "embed_tokens" in k for k in first)
    for k in first:
        if ".lora_" in k:
            continue
        assert torch.equal(first[k], last[k]), f"frozen {k} changed"
    assert any(not torch.equal(first[k], last[k]) for k in lora), "the adapters did not train"


def test_zero2_resume_is_exact(cache, zero2):
    """The run as if killed after its step-2 checkpoint: step 3 replayed from adapters and optimizer state."""
    last = zero2 / "checkpoints" / C.step_dir_name(3)
    expected_state, expected_metrics = module_state(last), metrics(zero2)
    shutil.rmtree(last)
    log = train(cache, zero2, 3, **{"distributed.zero_stage": 2})
    assert f"resumed from {zero2 / 'checkpoints' / C.step_dir_name(2)}" in log
    assert metrics(zero2) == expected_metrics
    state = module_state(last)
    assert state.keys() == expected_state.keys() and all(torch.equal(state[k], expected_state[k]) for k in state)


def test_zero3_run_exports_adapter_and_merged_model(tmp_path, cache):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fastdapo.config import load_config
    from fastdapo.export import export_checkpoint
    from fastdapo.toy.model import toy_model_dir

    run_dir = tmp_path / "run"
    train(cache, run_dir, 2, **{"distributed.zero_stage": 3})
    out = tmp_path / "export"
    export_checkpoint(run_dir, out)
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()

    args = overrides(cache, run_dir, 2)
    base_dir = toy_model_dir(load_config(None, [a for a in args if a != "--set"]))
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(out / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, m, b = (x(input_ids=ids).logits for x in (adapted, merged, base))
    torch.testing.assert_close(m, a, rtol=1e-5, atol=1e-5)
    assert (a - b).abs().max() > 1e-4, "the exported adapters are the identity (no training reached the export)"


def test_target_modules_naming_no_module_stop_the_run_in_one_line(tmp_path, cache):
    proc = run_cli(cache, tmp_path / "run", 1, **{"model.lora.target_modules": "[q_proj,qproj]"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: model.lora.target_modules: 'qproj' matches no module of Qwen2ForCausalLM; its linear layers: "
        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
    )
