"""The result every reward function returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RewardResult:
    score: float  # +1.0 correct, -1.0 incorrect
    acc: bool
    pred: str  # normalized extracted answer ("" when none was found)


def reward_result(acc: bool, pred: str) -> RewardResult:
    return RewardResult(score=1.0 if acc else -1.0, acc=acc, pred=pred)
