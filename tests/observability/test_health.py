"""Learning-stalled detection and the accuracy-change noise interval."""

import logging

import pytest

from fastdapo.observability.health import LearningHealth, accuracy_change, describe_change, has_gradient_signal

UPDATED = {"train/updates": 1, "train/skipped_updates": 0, "grad_norm": 0.3}
FLAT = {"train/updates": 1, "train/skipped_updates": 0, "grad_norm": 0.0}  # zero-variance rewards
SKIPPED = {"train/updates": 0, "train/skipped_updates": 0, "grad_norm": 0.0}  # no informative group


def test_gradient_signal_needs_an_applied_update_with_a_gradient():
    assert has_gradient_signal(UPDATED)
    assert not has_gradient_signal(FLAT) and not has_gradient_signal(SKIPPED)
    assert not has_gradient_signal({**UPDATED, "train/skipped_updates": 1})
    assert not has_gradient_signal({**UPDATED, "grad_norm": float("nan")})


def test_warns_once_after_k_quiet_steps_and_loudly_when_nothing_was_applied(caplog):
    health = LearningHealth(patience=2)
    with caplog.at_level(logging.WARNING, logger="fastdapo"):
        for step, m in enumerate([FLAT, SKIPPED, FLAT], 1):
            health.observe(step, m)
        assert not health.finish()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no gradient signal for 2 steps in a row (steps 1-2)" in warnings[0]
    assert any(r.levelno == logging.ERROR and "NO UPDATE WAS APPLIED" in r.getMessage() for r in caplog.records)


def test_a_step_with_signal_resets_the_count(caplog):
    health = LearningHealth(patience=2)
    with caplog.at_level(logging.WARNING, logger="fastdapo"):
        for step, m in enumerate([FLAT, UPDATED, FLAT], 1):
            health.observe(step, m)
        assert health.finish()
    assert not caplog.records


def test_accuracy_change_interval():
    diff, low, high = accuracy_change(0.5, 0.6, 100)
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1 - 1.96 * (0.49 / 100) ** 0.5)
    assert "within sampling noise" in describe_change(0.0, 0.5, 2)  # 2 prompts: anything goes
    assert "larger than sampling noise" in describe_change(0.2, 0.6, 200)
    assert "no change" in describe_change(0.0, 0.0, 2)
    assert "+50.0 points" in describe_change(0.0, 0.5, 2)
