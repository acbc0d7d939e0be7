"""A run that cannot learn says so, end to end: one-token responses are all truncated and all wrong, so
every group's rewards are equal, every advantage is 0 and no update moves the weights. With near-greedy
sampling every group's responses are equal: no optimizer step is applied, so the weights are exactly the
ones the run started from, as its closing message says."""

import subprocess

import torch
from safetensors.torch import load_file

from fastdapo.checkpoint import store as C
from fastdapo.observability.health import NO_SIGNAL_PATIENCE
from tests.training.test_resume import TIMEOUT, env, train_cmd, unwrap, weights


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


def test_equal_rewards_apply_no_step_and_leave_the_starting_weights(tmp_path):
    run_dir, cache, steps = tmp_path / "run", tmp_path / "cache", NO_SIGNAL_PATIENCE
    extra = ("--set", "rollout.top_p=0.0001", "--set", "optimizer.lr=1e-2", "--set", "optimizer.warmup_steps=0")
    proc = subprocess.run(
        train_cmd(run_dir, cache, *extra, steps=steps), env=env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    log = unwrap(proc.stderr)
    assert proc.returncode == 0, log[-3000:]
    assert f"NO UPDATE WAS APPLIED in this run's {steps} step(s): the weights are the ones it started from" in log
    (start,) = cache.glob("toy-*/model.safetensors")
    initial = load_file(str(start))
    for step in (1, steps):
        saved = weights(run_dir / "checkpoints" / C.step_dir_name(step))
        saved = {k.removeprefix("model."): v for k, v in saved.items()}  # the policy wraps the model
        assert set(initial) <= set(saved)
        for k, v in initial.items():
            assert torch.equal(saved[k], v), (step, k)
