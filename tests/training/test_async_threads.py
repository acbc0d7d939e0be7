"""The CPU split between a rank's trainer and its generator, under either launcher's name for the node's process
count (torchrun: LOCAL_WORLD_SIZE; DeepSpeed's launcher, which `fastdapo launch` runs: LOCAL_SIZE)."""

import os

import pytest

from fastdapo.config.load import load_config
from fastdapo.training.async_rollout import thread_split


@pytest.mark.parametrize("name", ["LOCAL_WORLD_SIZE", "LOCAL_SIZE"])
def test_each_rank_splits_only_its_share_of_the_cores(monkeypatch, name):
    for k in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    cfg = load_config(None, ["rollout.max_staleness=1"])
    assert thread_split(cfg) == (4, 4)
    monkeypatch.setenv(name, "2")
    assert thread_split(cfg) == (2, 2)
    cfg = load_config(None, ["rollout.max_staleness=1", "rollout.generator_threads=1"])
    assert thread_split(cfg) == (3, 1)
