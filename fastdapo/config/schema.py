"""Typed run configuration. YAML sections map one-to-one onto these dataclasses.

Defaults are the built-in toy run (configs/toy.yaml mirrors them). Field metadata carries the
allowed range or choices that `load.validate` enforces, so every rule lives next to its field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


def rng(lo=None, hi=None, *, help: str = "", lo_open: bool = False):
    return {"range": (lo, hi), "lo_open": lo_open, "help": help}


def choice(*options, help: str = ""):
    return {"choices": options, "help": help}


@dataclass
class ModelConfig:
    path: str = field(default="toy", metadata={"help": "'toy' (built-in tiny Qwen2) or a local Hugging Face model directory"})
    dtype: str = field(default="auto", metadata=choice("auto", "float32", "bfloat16", "float16", help="auto = bf16 on CUDA, fp32 on CPU"))
    attn_implementation: str = field(default="auto", metadata=choice(
        "auto", "packed_sdpa", "sdpa", "flash_attention_2", "eager",
        help="packed_sdpa: per-sequence SDPA for packed rows (no [T,T] mask); sdpa: 4-D block mask"))
    use_liger: str = field(default="auto", metadata=choice("auto", "on", "off", help="Liger RMSNorm/RoPE/SwiGLU; auto = on for CUDA"))
    gradient_checkpointing: bool = field(default=False, metadata={"help": "activation checkpointing for long responses"})
    # Built-in toy model and its supervised warm start (ignored for a real model path).
    toy_hidden_size: int = field(default=128, metadata=rng(8, 4096, help="toy model width"))
    toy_layers: int = field(default=2, metadata=rng(1, 64, help="toy model depth"))
    toy_heads: int = field(default=4, metadata=rng(1, 64, help="toy attention heads"))
    toy_sft_steps: int = field(default=1200, metadata=rng(0, None, help="supervised warm-start steps (cached)"))
    toy_sft_lr: float = field(default=1e-3, metadata=rng(0, 1, lo_open=True, help="warm-start learning rate"))
    toy_sft_noise: float = field(default=0.0, metadata=rng(0, 1, help="fraction of warm-start answers off by 1-2"))
    toy_sft_format_noise: float = field(default=0.75, metadata=rng(0, 1, help="fraction of warm-start answers in the wrong format"))
    cache_dir: str = field(default=".cache/fastdapo", metadata={"help": "where the warm-started toy model is cached"})


@dataclass
class DataConfig:
    train_files: list[str] = field(default_factory=list, metadata={"help": "parquet/jsonl files; empty = built-in toy task"})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "held-out prompt files for eval/acc"})
    max_prompt_length: int = field(default=2048, metadata=rng(1, None, help="longer prompts are dropped (counted)"))
    apply_chat_template: bool = field(default=True, metadata={"help": "use the tokenizer chat template when it has one"})
    shuffle: bool = field(default=True, metadata={"help": "reshuffle prompts every epoch"})
    toy_eval_size: int = field(default=256, metadata=rng(1, None, help="held-out toy problems"))
    toy_max_operand: int = field(default=20, metadata=rng(2, 10**6, help="toy problems are a+b, a-b with a, b <= this"))


@dataclass
class RolloutConfig:
    engine: str = field(default="torch", metadata=choice("torch", "hf", "vllm", help="rollout engine: torch = shared-prefill "
                                                           "KV-cached sampling loop, hf = transformers generate, vllm = GPU extra"))
    n: int = field(default=8, metadata=rng(1, 1024, help="responses per prompt (group size G)"))
    temperature: float = field(default=1.0, metadata=rng(0, 10, help="sampling temperature (also used for log-probs)"))
    top_p: float = field(default=1.0, metadata=rng(0, 1, lo_open=True, help="nucleus sampling"))
    max_response_length: int = field(default=24, metadata=rng(1, None, help="L_max: max new tokens per response"))
    batch_size: int = field(default=512, metadata=rng(1, None, help="sequences generated together (torch engine: whole groups, at least n)"))
    seed_per_prompt: bool = field(default=False, metadata={"help": "seed each prompt's samples from (run.seed, prompt uid): "
                                                            "rollouts independent of batching and process count"})
    eval_n: int = field(default=4, metadata=rng(1, 1024, help="samples per eval prompt (avg@k)"))
    eval_temperature: float = field(default=1.0, metadata=rng(0, 10, help="sampling temperature (also used for log-probs)"))
    eval_top_p: float = field(default=1.0, metadata=rng(0, 1, lo_open=True, help="nucleus sampling"))
    gpu_memory_utilization: float = field(default=0.5, metadata=rng(0, 1, lo_open=True, help="vLLM KV-cache share"))
    tensor_parallel_size: int = field(default=1, metadata=rng(1, 64, help="vLLM tensor parallel size"))


@dataclass
class AlgorithmConfig:
    eps_low: float = field(default=0.2, metadata=rng(0, 1, help="Clip-Higher lower clip"))
    eps_high: float = field(default=0.28, metadata=rng(0, 10, help="Clip-Higher upper clip"))
    dual_clip: Optional[float] = field(default=None, metadata=rng(1, None, lo_open=True, help="dual-clip c for A<0; null = off"))
    train_batch_size: int = field(default=32, metadata=rng(1, None, help="prompts per rollout step"))
    gen_batch_size: int = field(default=48, metadata=rng(1, None, help="prompts generated per sampling round"))
    max_num_gen_batches: int = field(default=4, metadata=rng(0, None, help="0 = unlimited"))
    dynamic_sampling: bool = field(default=True, metadata={"help": "drop all-correct/all-wrong groups, resample"})
    mini_batch_size: int = field(default=8, metadata=rng(1, None, help="prompts per optimizer update"))
    ppo_epochs: int = field(default=1, metadata=rng(1, 100, help="passes over the batch per rollout step"))
    max_tokens_per_micro_batch: int = field(default=8192, metadata=rng(16, None, help="packing token budget per micro-batch"))
    share_prompts: bool = field(default=True, metadata={"help": "pack each group's prompt once for all its responses "
                                                         "(exact; not with flash-attention)"})
    overlong_shaping: bool = field(default=True, metadata={"help": "soft overlong punishment"})
    overlong_buffer_len: int = field(default=8, metadata=rng(0, None, help="L_cache"))
    overlong_penalty_factor: float = field(default=1.0, metadata=rng(0, None, help="scale of the length penalty"))
    overlong_filtering: bool = field(default=False, metadata={"help": "mask the loss of truncated responses"})
    kernel_impl: str = field(default="auto", metadata=choice("auto", "triton", "torch", help="fused loss back-end; auto = triton on CUDA"))
    reward_timeout_s: float = field(default=5.0, metadata=rng(0, None, lo_open=True, help="hard time limit per verification"))
    reward_workers: int = field(default=0, metadata=rng(0, 256, help="math-verify worker processes (0 = CPU count, at most 8)"))


@dataclass
class OptimizerConfig:
    lr: float = field(default=5e-4, metadata=rng(0, 1, lo_open=True, help="AdamW learning rate"))
    warmup_steps: int = field(default=2, metadata=rng(0, None, help="linear warm-up, in optimizer updates"))
    weight_decay: float = field(default=0.1, metadata=rng(0, 1, help="AdamW weight decay (matrices only)"))
    grad_clip: float = field(default=1.0, metadata=rng(0, None, help="global gradient-norm clip"))
    beta1: float = field(default=0.9, metadata=rng(0, 1, help="AdamW beta1"))
    beta2: float = field(default=0.999, metadata=rng(0, 1, help="AdamW beta2"))


@dataclass
class DistributedConfig:
    zero_stage: int = field(default=2, metadata=rng(0, 3, help="DeepSpeed ZeRO stage"))
    backend: str = field(default="auto", metadata=choice("auto", "gloo", "nccl", help="auto = nccl on CUDA, gloo on CPU"))
    offload_optimizer: bool = field(default=False, metadata={"help": "ZeRO optimizer-state offload to CPU"})
    offload_params: bool = field(default=False, metadata={"help": "ZeRO-3 parameter offload to CPU"})
    deepspeed_config: Optional[str] = field(default=None, metadata={"help": "user DeepSpeed JSON merged over the generated one"})


@dataclass
class RunConfig:
    output_dir: str = field(default="runs/toy", metadata={"help": "RUN_DIR: config.yaml, metrics.jsonl, checkpoints/"})
    steps: int = field(default=40, metadata=rng(1, None, help="rollout steps"))
    seed: int = field(default=0, metadata={"help": "run seed (data order, sampling)"})
    device: str = field(default="auto", metadata=choice("auto", "cpu", "cuda", help="auto = cuda when visible"))
    eval_every: int = field(default=0, metadata=rng(0, None, help="0 = only at step 0 and at the end"))
    save_every: int = field(default=10, metadata=rng(0, None, help="0 = never"))
    keep_last: int = field(default=2, metadata=rng(1, None, help="checkpoints kept"))
    resume: str = field(default="auto", metadata={"help": "'auto' (latest checkpoint in output_dir), 'never', or a path"})
    log_samples_every: int = field(default=10, metadata=rng(0, None, help="write sample generations every k steps"))
    max_nonfinite_skips: int = field(default=3, metadata=rng(0, None, help="abort after this many non-finite updates in a row"))
    progress: bool = field(default=True, metadata={"help": "live progress bar"})
    tensorboard: bool = field(default=False, metadata={"help": "TensorBoard sink (optional extra)"})
    wandb: bool = field(default=False, metadata={"help": "Weights & Biases sink (optional extra)"})
    wandb_project: str = field(default="fastdapo", metadata={"help": "W&B project"})


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    run: RunConfig = field(default_factory=RunConfig)
