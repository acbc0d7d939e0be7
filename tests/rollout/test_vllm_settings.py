"""Platform defaults and config-time refusals for the vLLM engine (no vLLM needed)."""

import pytest

from fastdapo.rollout.base import RolloutConfigError
from fastdapo.rollout.vllm_settings import check_vllm_settings, resolve_settings


def test_platform_defaults():
    cpu, cuda = resolve_settings(platform="cpu"), resolve_settings(platform="cuda")
    assert (cpu.dtype, cpu.sleep_mode, cpu.gpu_memory_utilization) == ("float32", False, 0.1)
    assert (cuda.dtype, cuda.sleep_mode) == ("bfloat16", True)
    assert resolve_settings(dtype="bfloat16", gpu_memory_utilization=0.3, platform="cpu").gpu_memory_utilization == 0.3


def test_max_model_len_covers_prompt_and_response():
    assert resolve_settings(max_prompt_length=30, max_response_length=20, platform="cpu").max_model_len == 50
    with pytest.raises(RolloutConfigError, match=r"max_model_len 40 < data.max_prompt_length 30"):
        resolve_settings(max_model_len=40, max_prompt_length=30, max_response_length=20, platform="cpu")


def test_sleep_mode_refused_on_cpu():
    with pytest.raises(RolloutConfigError, match="sleep mode needs a CUDA GPU"):
        resolve_settings(sleep_mode=True, platform="cpu")


def test_per_prompt_seeds_refused_on_cpu_only():
    with pytest.raises(ValueError, match=r"^rollout.seed_per_prompt: .*vLLM on CPU"):
        check_vllm_settings(seed_per_prompt=True, platform="cpu")
    check_vllm_settings(seed_per_prompt=True, platform="cuda")
    check_vllm_settings(seed_per_prompt=False, platform="cpu")
