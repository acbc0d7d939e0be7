"""Config changes on resume: shown as a diff; each one applies, or is refused with its reason.

Most settings are read afresh every step (run.steps, eval / save settings, loss clipping, sampling)
and simply apply. The learning rate is re-applied to the restored schedule (`apply_learning_rate`).
What the checkpoint itself fixes (the weights' model, the prompt stream's data and seed, the
optimizer's restored moments and group settings) cannot change mid-run and is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from fastdapo.checkpoint.store import CheckpointError
from fastdapo.config import Config
from fastdapo.config.load import config_to_dict

log = logging.getLogger(__name__)

# key or section prefix -> why it cannot change on resume
FIXED = {
    "model.": "the checkpoint holds this model's weights",
    "toy.": "the checkpoint holds the toy model built with these settings",
    "data.": "the prompt stream's saved position indexes this data",
    "run.seed": "the saved prompt order and random states come from it",
    "rollout.n": "the group size is part of the run's algorithm",
    "optimizer.weight_decay": "the restored optimizer state keeps the saved value",
    "optimizer.beta": "the restored optimizer state keeps the saved value",
    # distributed.zero_stage and distributed.backend may change: a layout change is converted (reshard.py).
    "distributed.offload": "the restored optimizer state is not converted between offloaded and resident",
    "distributed.deepspeed_config": "a user DeepSpeed config can change what the checkpoint's state means",
}
# How this run was started and where its directory lies (a run copied or moved elsewhere resumes), not what it does.
_NOT_COMPARED = ("run.resume", "run.output_dir")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict, current: dict) -> list[tuple[str, object, object]]:
    old, new = _flat(saved), _flat(current)
    return [
        (k, old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if k not in _NOT_COMPARED and old.get(k) != new.get(k)
    ]


def review_config_changes(checkpoint: Path | None, cfg: Config) -> list[tuple[str, object, object]]:
    """Log the diff between the checkpoint's config and this run's; CheckpointError for a fixed setting."""
    saved_file = Path(checkpoint) / "config.yaml" if checkpoint is not None else None
    if saved_file is None or not saved_file.is_file():
        return []
    changes = config_changes(yaml.safe_load(saved_file.read_text()) or {}, config_to_dict(cfg))
    refused = [(k, why) for k, _, _ in changes for prefix, why in FIXED.items() if k.startswith(prefix)]
    if refused:
        key, why = refused[0]
        raise CheckpointError(
            f"cannot resume from {checkpoint} with {key} changed ({why}): set it back, or start "
            "a new run in another run.output_dir (nothing was written)"
        )
    for key, old, new in changes:
        log.warning("config changed on resume: %s: %r -> %r (applies from the next step)", key, old, new)
    return changes


def apply_learning_rate(engine, lr: float) -> None:
    """Make `lr` the schedule's base rate after a restore (the restored scheduler keeps the saved one)."""
    sched = getattr(engine, "lr_scheduler", None)
    if sched is None or not hasattr(sched, "lr_lambdas"):  # the LambdaLR warm-up of build_ds_engine
        return
    sched.base_lrs = [lr] * len(sched.base_lrs)
    for group, lmbda in zip(sched.optimizer.param_groups, sched.lr_lambdas):
        group["initial_lr"], group["lr"] = lr, lr * lmbda(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
