"""A run that cannot learn says so, end to end: one-token responses are all truncated and all wrong, so
every group's rewards are equal, every advantage is 0 and no update moves the weights."""

import subprocess

from fastdapo.observability.health import NO_SIGNAL_PATIENCE
from tests.training.test_resume import TIMEOUT, env, train_cmd, unwrap


def test_a_run_without_gradient_signal_warns_and_ends_with_no_update(tmp_path):
    steps = NO_SIGNAL_PATIENCE
    cmd = train_cmd(
        tmp_path / "run",
        tmp_path / "cache",
        "--set",
        "rollout.max_response_length=1",
        "--set",
        "algorithm.overlong_buffer_len=0",
        steps=steps,
        save_every=0,
    )
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    log = unwrap(proc.stderr)
    assert proc.returncode == 0, log[-3000:]
    assert f"no gradient signal for {steps} steps in a row (steps 1-{steps})" in log
    assert f"NO UPDATE WAS APPLIED in this run's {steps} step(s)" in log
