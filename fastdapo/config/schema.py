"""Typed run configuration. YAML sections map one-to-one onto these dataclasses.

Defaults are the DAPO paper recipe (Qwen2.5-32B, as trained by the reference implementation), so a key
missing from a real config gets the paper's value. `configs/toy.yaml` states the built-in toy run.
Field metadata carries each key's range or choices; cross-field rules live in `config.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fastdapo.toy.spec import CHAIN_MIN_STEPS, CHAIN_MOST_STEPS


def rng(lo=None, hi=None, *, help: str = "", lo_open: bool = False, hi_open: bool = False):
    return {"range": (lo, hi), "lo_open": lo_open, "hi_open": hi_open, "help": help}


def choice(*options, help: str = ""):
    return {"choices": options, "help": help}


@dataclass
class LoraConfig:
    """LoRA adapters (PEFT) on the frozen base model; the LM head stays frozen."""

    rank: int = field(default=0, metadata=rng(0, 4096, help="LoRA rank r; 0 = off (full fine-tuning)"))
    alpha: float = field(default=16.0, metadata=rng(0, None, lo_open=True, help="LoRA alpha (update scale alpha / r)"))
    dropout: float = field(default=0.0, metadata=rng(0, 1, hi_open=True, help="dropout on the LoRA input"))
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "module names to adapt; all-linear = every linear layer of the blocks (not the LM head)"},
    )


@dataclass
class ModelConfig:
    path: str = field(
        default="",
        metadata={
            "help": "required: a local Hugging Face model directory, or 'toy' "
            "(the built-in tiny Qwen2, see the toy section)"
        },
    )
    dtype: str = field(
        default="auto",
        metadata=choice("auto", "float32", "bfloat16", "float16", help="auto = bf16 on CUDA, fp32 on CPU"),
    )
    attn_implementation: str = field(
        default="auto",
        metadata=choice(
            "auto",
            "packed_sdpa",
            "sdpa",
            "flash_attention_2",
            "eager",
            help="packed_sdpa: per-sequence SDPA for packed rows (no [T,T] mask); sdpa: 4-D block mask",
        ),
    )
    use_liger: str = field(
        default="auto", metadata=choice("auto", "on", "off", help="Liger RMSNorm/RoPE/SwiGLU; auto = on for CUDA")
    )
    gradient_checkpointing: bool = field(default=True, metadata={"help": "activation checkpointing for long responses"})
    check_fidelity: bool = field(
        default=True,
        metadata={
            "help": ("before the first rollout, compare the trainer's log-probs with the model's forward (check-model)")
        },
    )
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ToyConfig:
    """The built-in toy model and task; used only with model.path 'toy' / empty data.train_files."""

    hidden_size: int = field(default=128, metadata=rng(8, 4096, help="toy model width"))
    layers: int = field(default=2, metadata=rng(1, 64, help="toy model depth"))
    heads: int = field(default=4, metadata=rng(1, 64, help="toy attention heads"))
    sft_steps: int = field(default=1200, metadata=rng(0, None, help="supervised warm-start steps (cached)"))
    sft_lr: float = field(default=1e-3, metadata=rng(0, 1, lo_open=True, help="warm-start learning rate"))
    sft_noise: float = field(
        default=0.0,
        metadata=rng(0, 1, help="fraction of warm-start answers off by 1-2 (chain: one line's, carried on)"),
    )
    sft_format_noise: float = field(
        default=0.75, metadata=rng(0, 1, help="fraction of warm-start answers in the wrong format")
    )
    cache_dir: str = field(default=".cache/fastdapo", metadata={"help": "where the warm-started toy model is cached"})
    eval_size: int = field(default=256, metadata=rng(1, None, help="held-out toy problems"))
    task: str = field(
        default="arithmetic",
        metadata=choice("arithmetic", "chain", help="arithmetic: What is a+b?; chain: a step repeated, one line each"),
    )
    max_operand: int = field(
        default=20, metadata=rng(2, 10**6, help="arithmetic task: problems are a+b, a-b with a, b <= this")
    )
    chain_max_steps: int = field(
        default=16,
        metadata=rng(CHAIN_MIN_STEPS, CHAIN_MOST_STEPS, help="chain task: most steps (response lines) of a problem"),
    )
    chain_problems: int = field(
        default=2048, metadata=rng(2, None, help="chain task: distinct problems, eval_size of them held out")
    )


@dataclass
class DataConfig:
    train_files: list[str] = field(
        default_factory=list, metadata={"help": "parquet/jsonl files; empty = built-in toy task"}
    )
    eval_files: list[str] = field(default_factory=list, metadata={"help": "held-out prompt files for eval/acc"})
    max_prompt_length: int = field(default=2048, metadata=rng(1, None, help="longer prompts are dropped (counted)"))
    apply_chat_template: bool = field(
        default=True, metadata={"help": "use the tokenizer chat template when it has one"}
    )
    shuffle: bool = field(default=True, metadata={"help": "reshuffle prompts every epoch"})


@dataclass
class RolloutConfig:
    engine: str = field(
        default="torch",
        metadata=choice(
            "torch",
            "hf",
            "vllm",
            help=(
                "rollout engine: torch = shared-prefill KV-cached sampling loop, hf = transformers generate, "
                "vllm = vLLM (GPU: pip install vllm; CPU: make install-vllm)"
            ),
        ),
    )
    n: int = field(
        default=16, metadata=rng(2, 1024, help="responses per prompt (group size G; a group of one has no advantage)")
    )
    temperature: float = field(
        default=1.0, metadata=rng(0, 10, lo_open=True, help="sampling temperature (also used for log-probs)")
    )
    top_p: float = field(default=1.0, metadata=rng(0, 1, lo_open=True, help="nucleus sampling"))
    max_response_length: int = field(default=20480, metadata=rng(1, None, help="L_max: max new tokens per response"))
    batch_size: int = field(
        default=512,
        metadata=rng(1, None, help="sequences generated together (torch engine: whole groups, at least n and eval_n)"),
    )
    seed_per_prompt: bool = field(
        default=False,
        metadata={
            "help": "seed each prompt's samples from (run.seed, prompt uid): "
            "rollouts independent of batching and process count"
        },
    )
    eval_n: int = field(default=32, metadata=rng(1, 1024, help="samples per eval prompt (avg@k)"))
    eval_temperature: float = field(default=1.0, metadata=rng(0, 10, lo_open=True, help="eval sampling temperature"))
    eval_top_p: float = field(default=0.7, metadata=rng(0, 1, lo_open=True, help="eval nucleus sampling"))
    gpu_memory_utilization: Optional[float] = field(
        default=None,
        metadata=rng(
            0,
            1,
            lo_open=True,
            help=("vLLM KV-cache memory share; null = automatic (0.5 of the GPU on CUDA, 0.1 of host memory on CPU)"),
        ),
    )
    tensor_parallel_size: int = field(default=1, metadata=rng(1, 64, help="vLLM tensor parallel size"))
    max_staleness: int = field(
        default=0,
        metadata=rng(
            0,
            64,
            help="asynchronous rollouts: 0 = generate, then train (synchronous); k >= 1 = a generator process samples "
            "while the actor trains, and a sample is used only while its policy is at most k updates old",
        ),
    )
    generator_threads: int = field(
        default=0,
        metadata=rng(0, 1024, help="CPU threads of the generator process (max_staleness >= 1); 0 = half of the cores"),
    )


@dataclass
class AlgorithmConfig:
    eps_low: float = field(
        default=0.2, metadata=rng(0, 1, hi_open=True, help="Clip-Higher lower clip: ratio >= 1 - eps_low")
    )
    eps_high: float = field(default=0.28, metadata=rng(0, 10, help="Clip-Higher upper clip: ratio <= 1 + eps_high"))
    dual_clip: Optional[float] = field(
        default=3.0, metadata=rng(1, None, lo_open=True, help="dual-clip c for A<0; null = off")
    )
    log_ratio_bound: float = field(
        default=20.0, metadata=rng(0, 80, lo_open=True, help="logp - logp_old is clamped to +-this before exp")
    )
    loss_agg_mode: str = field(
        default="token-mean",
        metadata=choice(
            "token-mean",
            "seq-mean-token-mean",
            help="token-mean = DAPO's token-level loss (every token of the mini-batch weighs the same); "
            "seq-mean-token-mean = GRPO's sample-level loss (each response's token mean, averaged over responses)",
        ),
    )
    reward: str = field(default="dapo", metadata=choice("dapo", "math_verify", help="reward function by name"))
    reward_boxed_fallback: bool = field(
        default=False,
        metadata={
            "help": "dapo reward: a response without an Answer: line is judged by its last \\boxed{} in the last "
            "100 characters, compared verbatim with the ground truth (verl >= 0.9.1); off = verl <= 0.9.0, the paper"
        },
    )
    rollout_correction: str = field(
        default="auto",
        metadata=choice(
            "auto",
            "none",
            "tis",
            "mis",
            help="engine/trainer mismatch correction: tis = truncated, mis = masked importance weights; "
            "auto = tis with asynchronous rollouts (rollout.max_staleness >= 1), else none",
        ),
    )
    rollout_correction_cap: float = field(
        default=2.0, metadata=rng(1, None, lo_open=True, help="C: tis weight <= C; mis keeps 1/C <= rho <= C")
    )
    train_batch_size: int = field(default=512, metadata=rng(1, None, help="prompts per rollout step"))
    gen_batch_size: int = field(
        default=1536,
        metadata=rng(1, None, help="prompts generated per sampling round (>= train_batch_size with dynamic sampling)"),
    )
    max_num_gen_batches: int = field(default=10, metadata=rng(0, None, help="0 = unlimited"))
    dynamic_sampling: bool = field(default=True, metadata={"help": "drop all-correct/all-wrong groups, resample"})
    mini_batch_size: int = field(
        default=32, metadata=rng(1, None, help="prompts per optimizer update (<= train_batch_size)")
    )
    ppo_epochs: int = field(default=1, metadata=rng(1, 100, help="passes over the batch per rollout step"))
    max_tokens_per_micro_batch: int = field(
        default=32768,
        metadata=rng(16, None, help="packing token budget per micro-batch (a longer sequence gets one alone)"),
    )
    share_prompts: bool = field(
        default=True,
        metadata={"help": "pack each group's prompt once for all its responses (exact; not with flash-attention)"},
    )
    overlong_shaping: bool = field(default=True, metadata={"help": "soft overlong punishment"})
    overlong_buffer_len: int = field(
        default=4096, metadata=rng(0, None, help="L_cache (< rollout.max_response_length)")
    )
    overlong_penalty_factor: float = field(default=1.0, metadata=rng(0, None, help="scale of the length penalty"))
    overlong_filtering: bool = field(default=False, metadata={"help": "mask the loss of truncated responses"})
    kernel_impl: str = field(
        default="auto", metadata=choice("auto", "triton", "torch", help="fused loss back-end; auto = triton on CUDA")
    )
    reward_timeout_s: float = field(
        default=5.0, metadata=rng(0, None, lo_open=True, help="hard time limit per verification")
    )
    reward_workers: int = field(
        default=0, metadata=rng(0, 256, help="math-verify worker processes (0 = CPU count, at most 8)")
    )


@dataclass
class OptimizerConfig:
    lr: float = field(default=1e-6, metadata=rng(0, 1, lo_open=True, help="AdamW learning rate"))
    warmup_steps: int = field(default=10, metadata=rng(0, None, help="linear warm-up, in optimizer updates"))
    weight_decay: float = field(default=0.1, metadata=rng(0, 1, help="AdamW weight decay (matrices only)"))
    grad_clip: float = field(default=1.0, metadata=rng(0, None, help="global gradient-norm clip"))
    beta1: float = field(default=0.9, metadata=rng(0, 1, hi_open=True, help="AdamW beta1"))
    beta2: float = field(default=0.999, metadata=rng(0, 1, hi_open=True, help="AdamW beta2"))


@dataclass
class DistributedConfig:
    zero_stage: int = field(default=2, metadata=rng(0, 3, help="DeepSpeed ZeRO stage"))
    backend: str = field(
        default="auto", metadata=choice("auto", "gloo", "nccl", help="auto = nccl on CUDA, gloo on CPU")
    )
    offload_optimizer: bool = field(
        default=False, metadata={"help": "ZeRO optimizer-state offload to CPU (stage >= 1)"}
    )
    offload_params: bool = field(default=False, metadata={"help": "ZeRO-3 parameter offload to CPU (stage 3)"})
    deepspeed_config: Optional[str] = field(
        default=None, metadata={"help": "user DeepSpeed JSON merged over the generated one"}
    )
    sequence_parallel_size: int = field(
        default=1,
        metadata=rng(
            1,
            1024,
            help="Ulysses sequence parallelism: S ranks split every packed row (1 = off); data-parallel degree = "
            "processes / S; needs packed_sdpa or flash attention and head counts divisible by S",
        ),
    )
    timeout_s: int = field(
        default=600,
        metadata=rng(
            1, None, help="seconds a collective waits for every rank before the run ends with an error (not a hang)"
        ),
    )


@dataclass
class RunConfig:
    output_dir: str = field(default="runs/dapo", metadata={"help": "RUN_DIR: config.yaml, metrics.jsonl, checkpoints/"})
    steps: int = field(default=1000, metadata=rng(1, None, help="rollout steps"))
    seed: int = field(default=0, metadata={"help": "run seed (data order, sampling)"})
    device: str = field(default="auto", metadata=choice("auto", "cpu", "cuda", help="auto = cuda when visible"))
    eval_every: int = field(default=10, metadata=rng(0, None, help="0 = only at step 0 and at the end"))
    save_every: int = field(default=10, metadata=rng(0, None, help="0 = never"))
    keep_last: int = field(default=2, metadata=rng(1, None, help="checkpoints kept"))
    resume: str = field(
        default="auto", metadata={"help": "'auto' (latest checkpoint in output_dir), 'never', or a path"}
    )
    log_samples_every: int = field(default=10, metadata=rng(0, None, help="write sample generations every k steps"))
    max_nonfinite_skips: int = field(
        default=3, metadata=rng(0, None, help="abort after this many non-finite updates in a row")
    )
    progress: bool = field(default=True, metadata={"help": "live progress bar"})
    tensorboard: bool = field(default=False, metadata={"help": "TensorBoard sink (optional extra)"})
    wandb: bool = field(default=False, metadata={"help": "Weights & Biases sink (optional extra)"})
    wandb_project: str = field(default="fastdapo", metadata={"help": "W&B project"})


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    toy: ToyConfig = field(default_factory=ToyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    run: RunConfig = field(default_factory=RunConfig)
