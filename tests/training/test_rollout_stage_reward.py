"""The rollout stage scores with the configured reward, ``algorithm.reward_boxed_fallback`` included."""

from contextlib import nullcontext

import pytest

from fastdapo.config import load_config
from fastdapo.data.records import PromptRecord
from fastdapo.rollout.base import Generation
from fastdapo.training.rollout_stage import score_groups


@pytest.mark.parametrize("fallback", [False, True])
def test_score_groups_follows_reward_boxed_fallback(fallback):
    cfg = load_config(
        None, ["rollout.n=2", "algorithm.overlong_shaping=false", f"algorithm.reward_boxed_fallback={fallback}"]
    )
    prompt = PromptRecord(prompt="p", prompt_ids=[1], ground_truth="7")
    gens = [Generation(0, [1], [2], text, False) for text in ("Answer: 7", "so $\\boxed{7}$.")]
    (group,) = score_groups([prompt], gens, cfg, lambda name: nullcontext())
    assert group.accs == [True, fallback] and group.scores == [1.0, 1.0 if fallback else -1.0]
