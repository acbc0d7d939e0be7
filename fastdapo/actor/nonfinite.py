"""Skip optimizer steps with non-finite gradients where DeepSpeed itself would apply them.

DeepSpeed checks gradients for inf/NaN and skips the step under ZeRO-1/2/3 (any dtype) and under
bf16/fp16 without ZeRO. Plain fp32 without ZeRO (stage 0) hands the gradients to the torch optimizer
as they are, so a single NaN batch would turn every weight into NaN. `guard_optimizer` gives that
optimizer the same behaviour as the ZeRO optimizers:

- the global gradient norm is computed (and gradients clipped) before the step;
- when it is not finite, every gradient is dropped, so the step changes neither the weights nor the
  optimizer state, and `optimizer.overflow` tells the DeepSpeed engine to count a skipped step and
  hold the LR scheduler back;
- `optimizer._global_grad_norm` is what `engine.get_global_grad_norm()` reports (inf on a skip),
  which the actor counts towards `run.max_nonfinite_skips`.
"""

from __future__ import annotations

import math

import torch


def needs_guard(ds_config: dict, dtype: torch.dtype) -> bool:
    """True for the one DeepSpeed mode without its own overflow check: fp32 parameters, ZeRO stage 0."""
    stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
    half = any(ds_config.get(k, {}).get("enabled", False) for k in ("bf16", "fp16", "bfloat16"))
    return stage == 0 and not half and dtype == torch.float32


def guard_optimizer(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Install the check; `max_norm` > 0 also clips (DeepSpeed's own clipping must then be off)."""
    optimizer.overflow = False
    optimizer._global_grad_norm = 0.0

    def _check(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        total = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        norm = float(total)
        opt._global_grad_norm = norm
        opt.overflow = not math.isfinite(norm)
        if opt.overflow:
            opt._global_grad_norm = float("inf")
            for g in opt.param_groups:
                for p in g["params"]:
                    p.grad = None  # torch optimizers leave parameters without a gradient untouched
        elif max_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(
                [p for g in opt.param_groups for p in g["params"] if p.grad is not None], max_norm, total
            )

    optimizer.register_step_pre_hook(_check)


class NonFiniteCounter:
    """Counts non-finite updates in a row and aborts past ``limit`` (0 = never); checkpointed with the run."""

    def __init__(self, limit: int = 3):
        self.limit = limit
        self.in_a_row = 0

    def observe(self, loss: float, grad_norm: float) -> bool:
        """True when this update was non-finite (DeepSpeed has already skipped its step)."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        if self.limit and self.in_a_row > self.limit:
            raise FloatingPointError(
                f"{self.in_a_row} non-finite updates in a row (loss={loss}, "
                f"grad_norm={grad_norm}); aborting (run.max_nonfinite_skips)"
            )
        return True

    def state_dict(self) -> dict:
        return {"nonfinite_in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.in_a_row = int(state["nonfinite_in_a_row"])
