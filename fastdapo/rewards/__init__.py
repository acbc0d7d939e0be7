"""Rule-based rewards. Select by name through ``REWARD_FUNCTIONS`` ("dapo" default, "math_verify")."""

from fastdapo.rewards.dapo_reward import dapo_reward
from fastdapo.rewards.extract import extract_answer
from fastdapo.rewards.math_reward import DEFAULT_TIMEOUT_S, math_verify_reward, warmup
from fastdapo.rewards.normalize import normalize_answer
from fastdapo.rewards.registry import (
    BATCH_REWARD_FUNCTIONS,
    DEFAULT_REWARD,
    REWARD_FUNCTIONS,
    check_reward_name,
    score_batch,
)
from fastdapo.rewards.result import RewardResult

# the public single-response reward: the DAPO reference semantics
dapo_math_reward = dapo_reward

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_REWARD",
    "RewardResult",
    "dapo_math_reward",
    "dapo_reward",
    "math_verify_reward",
    "score_batch",
    "warmup",
    "extract_answer",
    "normalize_answer",
    "REWARD_FUNCTIONS",
    "BATCH_REWARD_FUNCTIONS",
    "check_reward_name",
]
