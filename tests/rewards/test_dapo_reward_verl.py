"""``dapo`` against verl's own ``math_dapo.compute_score``, read out of the released wheels of verl 0.9.0 and 0.9.1
(fetched from PyPI into the bench's cache once; skipped only where PyPI cannot be reached). verl >= 0.9.1 has
the ``\\boxed{}`` fallback: ``dapo`` is compared with ``reward_boxed_fallback`` on."""

import json
from pathlib import Path

import pytest
from test_dapo_boxed_fallback import CASES

from fastdapo.rewards.dapo_reward import dapo_reward
from fastdapo.rewards.minerva_normalize import normalize_final_answer
from fastdapo_bench.reward_renderings import renderings
from fastdapo_bench.verl_math_dapo import VerlFetchError, _version_key, default_cache_dir, fetch_wheel, load_math_dapo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CACHE = default_cache_dir()


def _pairs():
    hand = [(r, g) for r, g, *_ in CASES if isinstance(g, str) and g.strip()]
    hand += [("Answer: 205\nso \\boxed{204}", "204"), ("x\\boxed{204}" + "x" * 90, "204"), ("\\boxed {204}", "204")]
    for name in ("aime-2024.jsonl", "minerva-math-sample.jsonl"):
        for line in (FIXTURES / name).read_text().splitlines():
            gt = str(json.loads(line)["reward_model"]["ground_truth"])
            if normalize_final_answer(gt):  # an empty-normalizing truth is a deliberate difference
                hand += [(text, gt) for _, text in renderings(gt.strip())]
    return hand


@pytest.mark.parametrize("version", ["0.9.0", "0.9.1"])
def test_dapo_makes_verls_decisions(version):
    try:
        wheel, _ = fetch_wheel(version, CACHE)
    except VerlFetchError as e:
        pytest.skip(str(e))  # no network to PyPI here: the wheel-loading path is still tested with a built wheel
    verl = load_math_dapo(wheel, version).compute_score
    fallback = _version_key(version) >= (0, 9, 1)
    differ = [
        (r, g) for r, g in _pairs() if dapo_reward(r, g, reward_boxed_fallback=fallback).acc != bool(verl(r, g)["acc"])
    ]
    assert differ == []
