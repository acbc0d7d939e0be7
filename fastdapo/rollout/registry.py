"""Rollout engines by name."""

from __future__ import annotations

from fastdapo.rollout.base import RolloutEngine


def _hf(**kw) -> RolloutEngine:
    from fastdapo.rollout.hf_engine import HFEngine

    return HFEngine(**kw)


def _torch(**kw) -> RolloutEngine:
    from fastdapo.rollout.torch_engine import TorchEngine

    return TorchEngine(**kw)


def _vllm(**kw) -> RolloutEngine:
    from fastdapo.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(**kw)


ENGINES = {"hf": _hf, "torch": _torch, "vllm": _vllm}


def build_engine(name: str, **kwargs) -> RolloutEngine:
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; available: {', '.join(ENGINES)}")
    return ENGINES[name](**kwargs)
