"""DeepSpeed engine for the actor: generated config, optional user JSON merged on top."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from fastdapo.actor.nonfinite import guard_optimizer, needs_guard
from fastdapo.config.schema import Config
from fastdapo.runtime import distributed as D
from fastdapo.runtime import sequence_parallel as SP

log = logging.getLogger(__name__)


def generated_ds_config(cfg: Config, dtype: torch.dtype) -> dict:
    d, o = cfg.distributed, cfg.optimizer
    zero: dict = {"stage": d.zero_stage}
    if d.zero_stage >= 1 and d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if d.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        # Micro-batches are packed token budgets, so DeepSpeed's sample-based batch sizes stay at 1;
        # the trainer marks gradient-accumulation boundaries itself.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def _merge(base: dict, user: dict, path: str, conflicts: list[str]) -> dict:
    out = dict(base)
    for k, v in user.items():
        key = f"{path}.{k}" if path else k
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, key, conflicts)
        else:
            if k in base and base[k] != v:
                conflicts.append(f"{key}: {base[k]!r} -> {v!r}")
            out[k] = v
    return out


def merge_user_config(generated: dict, user_path: str | None) -> tuple[dict, list[str]]:
    """User keys win; every value they change is reported."""
    if not user_path:
        return generated, []
    try:
        user = json.loads(Path(user_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"distributed.deepspeed_config: cannot read {user_path}: {e}") from None
    conflicts: list[str] = []
    merged = _merge(generated, user, "", conflicts)
    for c in conflicts:
        log.warning("DeepSpeed config override from %s: %s", user_path, c)
    return merged, conflicts


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]  # LoRA adapters are all matrices; DeepSpeed drops empty groups


def build_ds_engine(module: torch.nn.Module, cfg: Config, dtype: torch.dtype, device: torch.device, mpu=None):
    """``mpu``: the sequence-parallel groups (runtime.sequence_parallel), None without sequence parallelism."""
    import deepspeed

    o = cfg.optimizer
    ds_cfg, _ = merge_user_config(generated_ds_config(cfg, dtype), cfg.distributed.deepspeed_config)
    groups = _param_groups(module, o.weight_decay)
    if cfg.distributed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        opt = DeepSpeedCPUAdam(groups, lr=o.lr, betas=(o.beta1, o.beta2), adamw_mode=True)
    else:
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), fused=device.type == "cuda")
    warmup = max(1, o.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    if needs_guard(ds_cfg, dtype):  # fp32 ZeRO-0 has no overflow check: the guard checks, clips and skips
        guard_optimizer(opt, float(ds_cfg.get("gradient_clipping", 0.0)))
        ds_cfg = {**ds_cfg, "gradient_clipping": 0.0}
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=opt, lr_scheduler=sched, config=ds_cfg, mpu=mpu)
    return engine


def gradient_average_degree(engine) -> int:
    """The count DeepSpeed divides the ranks' summed gradients by, which the loss scale undoes. Without
    sequence parallelism: every rank. With it (DeepSpeed 0.19): the data-parallel degree (ranks / S) at
    ZeRO 0-2, but every rank at ZeRO-3, whose reduce-scatter leaves S out (its other, bucketed reduction
    does not, so reduce_scatter must stay on). The sequence-parallel training tests pin both."""
    world, sp = D.world_size(), SP.size()
    stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else 0
    if sp == 1 or stage == 3:
        if stage == 3 and sp > 1 and not getattr(engine.optimizer, "reduce_scatter", True):
            raise SP.SequenceParallelError(
                "distributed.deepspeed_config sets zero_optimization.reduce_scatter=false, which ZeRO-3 "
                "averages inconsistently with sequence parallelism; remove it"
            )
        return world
    return world // sp


@contextmanager
def load_universal(engine):
    """For one load, the engine reads DeepSpeed's universal checkpoint (config ``checkpoint.load_universal``);
    the switch is read only while loading, so the engine need not be built with it."""
    config = engine._config
    before, config.load_universal_checkpoint = config.load_universal_checkpoint, True
    try:
        yield engine
    finally:
        config.load_universal_checkpoint = before
