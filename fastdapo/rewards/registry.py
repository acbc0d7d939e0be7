"""Reward functions by name, and the batched scorer the trainer and evaluation call.

``dapo`` (the default) is the DAPO reference reward (``dapo_reward.py``); ``math_verify`` is the
lenient symbolic-equivalence reward for sets with non-integer answers (``math_reward.py``).
"""

from __future__ import annotations

from fastdapo.rewards.dapo_reward import dapo_reward, score_batch_dapo
from fastdapo.rewards.math_reward import DEFAULT_TIMEOUT_S, math_verify_reward, score_batch_math_verify
from fastdapo.rewards.result import RewardResult

DEFAULT_REWARD = "dapo"
# name -> per-response reward (response, ground_truth) -> RewardResult
REWARD_FUNCTIONS = {"dapo": dapo_reward, "math_verify": math_verify_reward}
# name -> batched scorer (responses, ground_truths, num_workers=, timeout_s=) -> list[RewardResult]
BATCH_REWARD_FUNCTIONS = {"dapo": score_batch_dapo, "math_verify": score_batch_math_verify}


def check_reward_name(name: str) -> str:
    """The name itself, or a one-line ValueError listing the known rewards."""
    if name not in REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARD_FUNCTIONS))}")
    return name


def score_batch(
    responses: list[str],
    ground_truths: list[str],
    reward: str = DEFAULT_REWARD,
    num_workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    reward_boxed_fallback: bool = False,
) -> list[RewardResult]:
    """Score responses against ground truths with the reward named ``reward``; ``num_workers`` and
    ``timeout_s`` bound the worker processes of ``math_verify`` (``dapo`` needs none);
    ``reward_boxed_fallback`` is the ``dapo`` reward's ``\\boxed{}`` fallback (verl 0.9.1)."""
    name = check_reward_name(reward)
    options = {}
    if reward_boxed_fallback:
        # an option another reward would silently ignore is a mistake worth one line
        if name != "dapo":
            raise ValueError(f"reward_boxed_fallback applies to the dapo reward only, not {name!r}")
        options["reward_boxed_fallback"] = True
    return BATCH_REWARD_FUNCTIONS[name](
        responses, ground_truths, num_workers=num_workers, timeout_s=timeout_s, **options
    )
