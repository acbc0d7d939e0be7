"""Build what a run needs from its config: device, dtype, model, tokenizer, prompt sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from fastdapo.actor.model_support import check_model_support, choose_attention, model_class
from fastdapo.actor.ulysses import ULYSSES_ATTN_IMPLS
from fastdapo.config.schema import Config
from fastdapo.data.records import PromptRecord
from fastdapo.packing.attention import PACKED_SDPA, register_attention
from fastdapo.runtime import sequence_parallel as SP

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Workspace:
    model: torch.nn.Module
    tokenizer: object
    model_dir: str
    train: list[PromptRecord]
    eval: list[PromptRecord]


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def resolve_attn(name: str, device: torch.device) -> str:
    """auto: flash-attention varlen on CUDA when installed, else per-sequence packed SDPA."""
    if name.startswith("flash_attention"):
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"model.attn_implementation={name} needs flash-attn: pip install 'fastdapo[gpu]' (CUDA machines only)"
            ) from None
        return name
    if name == "auto" and device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    if name in ("auto", PACKED_SDPA):
        return register_attention(PACKED_SDPA)
    return name


def apply_liger(model: torch.nn.Module, mode: str, device: torch.device) -> bool:
    """Liger's fused RMSNorm/RoPE/SwiGLU; the LM head and loss stay ours."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return False
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        if mode == "on":
            raise RuntimeError("model.use_liger=on needs liger-kernel: pip install 'fastdapo[gpu]'") from None
        return False
    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )
    return True


def exact_attention(model_dir: str, requested: str, resolved: str, sp_size: int = 1) -> str:
    """``resolved``, or the attention the model's config needs for an exact packed path; with sequence
    parallelism, refuses head counts and attentions Ulysses cannot split (all read before loading)."""
    from pathlib import Path

    from transformers import AutoConfig

    if not (Path(model_dir) / "config.json").exists():
        return resolved  # the loader names the missing file
    config = AutoConfig.from_pretrained(model_dir)
    attn = choose_attention(config, requested, resolved)
    if sp_size > 1:
        name = model_class(config)
        SP.check_heads(config, sp_size, name)
        if attn not in ULYSSES_ATTN_IMPLS:
            raise SP.SequenceParallelError(
                f"distributed.sequence_parallel_size={sp_size}: {name} runs {attn} attention here, which Ulysses "
                f"cannot split; use model.attn_implementation packed_sdpa or flash_attention_2"
            )
    return attn


def build_workspace(cfg: Config, device: torch.device) -> Workspace:
    from fastdapo.actor.lora import apply_lora
    from fastdapo.models import load_model_and_tokenizer
    from fastdapo.toy.model import toy_model_dir

    dtype = resolve_dtype(cfg.model.dtype, device)
    model_dir = str(toy_model_dir(cfg)) if cfg.model.path == "toy" else cfg.model.path
    requested = cfg.model.attn_implementation
    attn = exact_attention(
        model_dir, requested, resolve_attn(requested, device), cfg.distributed.sequence_parallel_size
    )
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype=dtype, attn_implementation=attn)
    # refuses, at load and in one line, what the packed training path would compute inexactly
    check_model_support(model, attn, cfg.data.max_prompt_length + cfg.rollout.max_response_length)
    apply_liger(model, cfg.model.use_liger, device)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = True  # generation keeps its KV cache; packing passes use_cache=False itself
    model = apply_lora(model, cfg.model.lora)  # rank 0: unchanged
    train, evals = build_prompts(cfg, tokenizer)
    return Workspace(model=model.to(device), tokenizer=tokenizer, model_dir=model_dir, train=train, eval=evals)


def build_prompts(cfg: Config, tokenizer) -> tuple[list[PromptRecord], list[PromptRecord]]:
    d = cfg.data
    if not d.train_files:
        from fastdapo.toy.tasks import toy_records

        return toy_records(cfg.toy, tokenizer)
    from fastdapo.data.loader import load_prompts

    def load(files):
        out = []
        for f in files:
            recs, _ = load_prompts(f, tokenizer, d.max_prompt_length, apply_chat_template=d.apply_chat_template)
            out += recs
        return out

    return load(d.train_files), load(d.eval_files)
