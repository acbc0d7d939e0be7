"""Resume with another process count or ZeRO stage (DeepSpeed's universal checkpoint), end to end through the
CLI: the step counter, data position, optimizer and LR schedule carry over, and with per-prompt sampling seeds
the resumed run ends where an uninterrupted one-process run does (weights to 1e-5, metrics to rel 1e-4, the
tolerances test_multiprocess uses for 1 vs 2 processes)."""

import hashlib
from pathlib import Path

import pytest
import torch

from fastdapo.checkpoint import store as C
from tests.training.test_multiprocess import (
    TINY,
    assert_same_trajectory,
    assert_same_weights,
    cli,
    final_weights,
    free_port,
    metrics,
)
from tests.training.test_multiprocess import args as mp_args

STEPS = TINY["run.steps"]  # 3: the interrupted runs stop after 2 and resume for the last one
UPDATES = STEPS * TINY["algorithm.train_batch_size"] // TINY["algorithm.mini_batch_size"]  # optimizer steps


def args(out: Path, cache: Path, **extra) -> list[str]:
    return mp_args(out, cache, **{"run.keep_last": 5, **extra})  # the resumed-from checkpoint stays to inspect


def checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / C.step_dir_name(step)


def engine_state(ckpt: Path) -> dict:
    """The engine's counters and LR schedule (in the model-states file of either ZeRO layout)."""
    f = next((ckpt / C.ENGINE_TAG).glob("*model_states.pt"))
    sd = torch.load(f, map_location="cpu", weights_only=False)
    return {"global_steps": sd["global_steps"], "lr_scheduler": sd["lr_scheduler"]}


def trainer_state(ckpt: Path) -> dict:
    s = torch.load(ckpt / C.state_file(0), map_location="cpu", weights_only=True)
    return {"step": s["step"], "stream": s["components"]["stream"], "shuffle_rng": s["components"]["shuffle_rng"]}


def digests(ckpt: Path) -> dict:
    return {
        str(f.relative_to(ckpt)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(ckpt.rglob("*"))
        if f.is_file() and "universal" not in f.parts
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted one-process ZeRO-2 run (also builds the cached tiny warm start)."""
    root = tmp_path_factory.mktemp("reshard")
    cache, out = root / "cache", root / "reference"
    proc = cli("train", *args(out, cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, cache, out


def check_resumed(proc, out: Path, ref: Path, source: Path, before: dict) -> None:
    log = " ".join(proc.stderr.split())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from {source} (step 2)" in log and "universal checkpoint" in log
    assert digests(source) == before  # the original files are untouched
    assert (source / "universal" / C.ENGINE_TAG / "zero").is_dir()
    got, want = metrics(out), metrics(ref)
    assert [m["step"] for m in got] == list(range(1, STEPS + 1))  # 1-2 kept, 3 after the resume
    assert_same_trajectory(got, want)
    end, ref_end = checkpoint(out, STEPS), checkpoint(ref, STEPS)
    assert trainer_state(end) == trainer_state(ref_end)  # step counter, data position, shuffles
    ours, theirs = engine_state(end), engine_state(ref_end)
    assert ours["global_steps"] == theirs["global_steps"] == UPDATES  # the optimizer's step count
    assert ours["lr_scheduler"]["last_epoch"] == theirs["lr_scheduler"]["last_epoch"] == UPDATES
    assert ours["lr_scheduler"]["_last_lr"] == pytest.approx(theirs["lr_scheduler"]["_last_lr"])
    # Adam's moments and step carried over: one more update lands on the uninterrupted run's weights.
    assert_same_weights(final_weights(out), final_weights(ref))


def test_two_processes_resume_as_one(reference):
    root, cache, ref = reference
    out = root / "two-then-one"
    first = cli("launch", "--num-procs", "2", "--master-port", str(free_port()), *args(out, cache, **{"run.steps": 2}))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    source = checkpoint(out, 2)
    assert C.read_manifest(source)["world_size"] == 2
    before = digests(source)
    proc = cli("train", *args(out, cache), "--resume", "auto")
    check_resumed(proc, out, ref, source, before)
    assert "sampling random states cannot carry over" in " ".join(proc.stderr.split())


def test_zero2_resumes_as_zero3(reference):
    root, cache, ref = reference
    out = root / "zero2-then-3"
    first = cli("train", *args(out, cache, **{"run.steps": 2}))
    assert first.returncode == 0, first.stderr[-3000:]
    source = checkpoint(out, 2)
    before = digests(source)
    proc = cli("train", *args(out, cache, **{"distributed.zero_stage": 3}), "--resume", "auto")
    check_resumed(proc, out, ref, source, before)
    assert C.read_manifest(checkpoint(out, STEPS))["zero_stage"] == 3
