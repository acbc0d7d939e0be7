"""Config changes on resume: shown, applied (the learning rate reaches the restored schedule) or refused."""

import logging

import pytest

from fastdapo.checkpoint.config_changes import apply_learning_rate, config_changes, review_config_changes
from fastdapo.checkpoint.store import CheckpointError
from fastdapo.config import load_config, save_config
from tests.checkpoint.test_checkpoint import _engine


def test_diff_lists_changed_keys_except_resume():
    assert config_changes(
        {"a": {"b": 1, "c": 2}, "run": {"resume": "x"}}, {"a": {"b": 1, "c": 3}, "run": {"resume": "auto"}}
    ) == [("a.c", 2, 3)]


def test_changed_lr_and_steps_are_shown(tmp_path, caplog):
    save_config(load_config(), tmp_path / "config.yaml")
    cfg = load_config(None, ["optimizer.lr=0.001", "run.steps=99"])
    with caplog.at_level(logging.WARNING):
        changes = review_config_changes(tmp_path, cfg)
    assert {k for k, _, _ in changes} == {"optimizer.lr", "run.steps"}
    assert "optimizer.lr: 0.0002 -> 0.001" in caplog.text and "run.steps" in caplog.text
    assert review_config_changes(None, cfg) == []


@pytest.mark.parametrize(
    "override, key",
    [
        ("rollout.n=4", "rollout.n"),
        ("run.seed=7", "run.seed"),
        ("optimizer.beta2=0.9", "optimizer.beta2"),
        ("distributed.offload_optimizer=true", "distributed.offload_optimizer"),
    ],
)
def test_settings_the_checkpoint_fixes_are_refused(tmp_path, override, key):
    save_config(load_config(), tmp_path / "config.yaml")
    with pytest.raises(CheckpointError, match=rf"with {key} changed \(.+\): set it back"):
        review_config_changes(tmp_path, load_config(None, [override]))


def test_zero_stage_may_change(tmp_path):
    """A changed ZeRO stage is converted through DeepSpeed's universal checkpoint (fastdapo.checkpoint.reshard)."""
    save_config(load_config(), tmp_path / "config.yaml")
    changes = review_config_changes(tmp_path, load_config(None, ["distributed.zero_stage=3"]))
    assert [k for k, _, _ in changes] == ["distributed.zero_stage"]


def test_new_learning_rate_reaches_the_restored_schedule():
    _, _, engine = _engine(2)
    engine.lr_scheduler.step()
    step = engine.lr_scheduler.last_epoch
    apply_learning_rate(engine, 5e-3)
    expected = 5e-3 * engine.lr_scheduler.lr_lambdas[0](step)
    assert engine.lr_scheduler.get_last_lr()[0] == pytest.approx(expected)
    assert all(g["lr"] == pytest.approx(expected) for g in engine.optimizer.param_groups)
    engine.lr_scheduler.step()
    assert engine.lr_scheduler.get_last_lr()[0] == pytest.approx(5e-3 * engine.lr_scheduler.lr_lambdas[0](step + 1))
