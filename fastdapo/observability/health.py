"""Saying loudly when a run cannot learn, and whether an accuracy change is more than sampling noise.

A step carries gradient signal when an optimizer update ran with a non-zero gradient. Without it
(groups whose rewards are all equal, a group size of one, no informative group collected, every
response truncated and filtered) the loss and gradient are 0 and the weights do not move, while
every other metric looks normal.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger("fastdapo")

NO_SIGNAL_PATIENCE = 3  # steps in a row without gradient signal before the warning


def has_gradient_signal(metrics: dict) -> bool:
    applied = metrics.get("train/updates", 0) - metrics.get("train/skipped_updates", 0)
    grad = metrics.get("grad_norm", 0.0)
    return applied > 0 and math.isfinite(grad) and grad > 0


class LearningHealth:
    """Watches every step's metrics; warns after `patience` steps in a row without gradient signal and,
    at the end, when no step of this run had any."""

    def __init__(self, patience: int = NO_SIGNAL_PATIENCE):
        self.patience = patience
        self.steps = self.with_signal = self.quiet = 0

    def observe(self, step: int, metrics: dict) -> None:
        self.steps += 1
        if has_gradient_signal(metrics):
            self.with_signal += 1
            self.quiet = 0
            return
        self.quiet += 1
        if self.quiet == self.patience:
            log.warning(
                "no gradient signal for %d steps in a row (steps %d-%d): the loss and gradient are 0 and the "
                "weights do not change. Usual causes: rollout.n of 1, a reward that gives every response of a "
                "group the same score, every response truncated (no EOS token, max_response_length too "
                "short)",
                self.quiet,
                step - self.quiet + 1,
                step,
            )

    def finish(self) -> bool:
        """False (after an error-level message) when the run trained steps but applied no update at all."""
        if self.steps and not self.with_signal:
            log.error(
                "NO UPDATE WAS APPLIED in this run's %d step(s): the weights are the ones it started from; "
                "nothing was learned (see the warnings above)",
                self.steps,
            )
            return False
        return True


def accuracy_change(before: float, after: float, n_prompts: int, z: float = 1.96) -> tuple[float, float, float]:
    """(after - before, low, high): a conservative 95% interval of the change. Each prompt's accuracy lies
    in [0, 1], so its variance is at most p(1-p); prompts are the unit, so samples of one prompt are not
    counted as independent."""
    diff = after - before
    se = math.sqrt((before * (1 - before) + after * (1 - after)) / max(n_prompts, 1))
    return diff, diff - z * se, diff + z * se


def describe_change(before: float, after: float, n_prompts: int) -> str:
    diff, low, high = accuracy_change(before, after, n_prompts)
    if diff == 0:
        verdict = "no change"
    elif low <= 0 <= high:
        verdict = "within sampling noise"
    else:
        verdict = "larger than sampling noise"
    return (
        f"accuracy before -> after: {before:.3f} -> {after:.3f} ({100 * diff:+.1f} points, 95% interval "
        f"{100 * low:+.1f} to {100 * high:+.1f} over {n_prompts} prompts: {verdict})"
    )
