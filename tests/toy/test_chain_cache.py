"""The warm-start cache key: every chain setting that changes the model changes it; the arithmetic task's key
(and so its shipped and cached warm starts) is as it was."""

import pytest

from fastdapo.config import load_config
from fastdapo.toy.model import SHIPPED, _cache_key

CHAIN = ["toy.task=chain"]


def key(*overrides: str) -> str:
    return _cache_key(load_config(None, list(overrides)))


def test_arithmetic_key_is_unchanged():
    assert (SHIPPED / f"toy-{key()}" / "config.json").exists()  # the shipped default warm start is still found
    assert key("toy.chain_max_steps=5", "toy.chain_problems=100") == key()  # chain keys do not touch it


@pytest.mark.parametrize("override", ["toy.chain_max_steps=8", "toy.chain_problems=1000", "toy.sft_noise=0.1"])
def test_chain_settings_change_the_key(override):
    assert key(*CHAIN) != key()
    assert key(*CHAIN, override) != key(*CHAIN)
