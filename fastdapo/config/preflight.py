"""Checks against the machine (files, optional packages) that `fastdapo train` runs before loading a model.

Kept apart from the pure rules: a config written for a cluster must still load and validate elsewhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastdapo.config.schema import Config
from fastdapo.config.vllm_check import vllm_setting_error

_GPU_HINT = "pip install 'fastdapo[gpu]'"


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def preflight_errors(cfg: Config) -> list[str]:
    out = []
    m, d = cfg.model, cfg.data
    if m.path and m.path != "toy" and not (Path(m.path) / "config.json").is_file():
        out.append(f"model.path: {m.path} is not a Hugging Face model directory (no config.json)")
    for key, files in (("data.train_files", d.train_files), ("data.eval_files", d.eval_files)):
        out += [f"{key}: {f} does not exist" for f in files if not Path(f).is_file()]
    ds = cfg.distributed.deepspeed_config
    if ds and not Path(ds).is_file():
        out.append(f"distributed.deepspeed_config: {ds} does not exist")
    resume = cfg.run.resume
    if resume not in ("auto", "never") and not Path(resume).exists():
        out.append(f"run.resume: {resume} does not exist (use auto, never, or a checkpoint / run directory)")
    if cfg.rollout.engine == "vllm":  # wrong whether or not vLLM is installed yet
        out += [e for e in [vllm_setting_error(cfg.rollout.seed_per_prompt)] if e]
    optional = [
        ("model.use_liger", m.use_liger == "on", "liger_kernel", _GPU_HINT),
        ("model.attn_implementation", m.attn_implementation == "flash_attention_2", "flash_attn", _GPU_HINT),
        ("rollout.engine", cfg.rollout.engine == "vllm", "vllm", "make install-vllm on CPU, pip install vllm on GPU"),
        ("run.tensorboard", cfg.run.tensorboard, "tensorboard", "pip install 'fastdapo[tracking]'"),
        ("run.wandb", cfg.run.wandb, "wandb", "pip install 'fastdapo[tracking]'"),
    ]
    for key, wanted, module, hint in optional:
        if wanted and _missing(module):
            out.append(f"{key}: needs the {module} package ({hint})")
    return out
