"""Rule-based rewards. Select by name through ``REWARD_FUNCTIONS``."""
from fastdapo.rewards.extract import extract_answer
from fastdapo.rewards.math_reward import (
    DEFAULT_TIMEOUT_S, RewardResult, dapo_math_reward, score_batch, warmup,
)
from fastdapo.rewards.normalize import normalize_answer

# name -> per-response reward function (response, ground_truth) -> RewardResult
REWARD_FUNCTIONS = {"dapo_math": dapo_math_reward}
# name -> batched scorer (responses, ground_truths, num_workers=, timeout_s=) -> list[RewardResult]
BATCH_REWARD_FUNCTIONS = {"dapo_math": score_batch}

__all__ = [
    "DEFAULT_TIMEOUT_S", "RewardResult", "dapo_math_reward", "score_batch", "warmup",
    "extract_answer", "normalize_answer", "REWARD_FUNCTIONS", "BATCH_REWARD_FUNCTIONS",
]
