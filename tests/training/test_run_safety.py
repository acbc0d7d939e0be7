"""A later run never destroys an earlier one, and a finished run always leaves exportable weights:
through the CLI in subprocesses, with the tiny settings of test_resume."""

import json
import subprocess
from pathlib import Path

import pytest

from fastdapo.checkpoint import store as C
from tests.training.test_resume import TIMEOUT, env, steps_logged, train_cmd, unwrap


def earlier_run(run_dir: Path, world: int) -> dict[str, bytes]:
    """A run directory as an earlier run left it; returns every file's bytes."""
    d = run_dir / "checkpoints" / C.step_dir_name(3)
    (d / "engine").mkdir(parents=True)
    (d / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 100)
    for r in range(world):
        (d / C.state_file(r)).write_bytes(b"s" * 10)
    files = {str(f.relative_to(d)): f.stat().st_size for f in d.rglob("*") if f.is_file()}
    (d / C.MANIFEST).write_text(json.dumps({"step": 3, "world_size": world, "zero_stage": 2, "files": files}))
    (run_dir / "config.yaml").write_text("run:\n  steps: 3\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in range(4)))
    (run_dir / "samples.jsonl").write_text(json.dumps({"step": 2}) + "\n")
    return tree(run_dir)


def tree(run_dir: Path) -> dict[str, bytes]:
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in sorted(run_dir.rglob("*")) if f.is_file()}


@pytest.mark.parametrize(
    "world, resume, expected",
    [
        (2, "auto", "cannot resume from"),  # saved by 2 processes, resumed by 1
        (1, "never", "run.resume=never, but"),
    ],
)
def test_a_refused_run_writes_nothing(tmp_path, world, resume, expected):
    run_dir = tmp_path / "run"
    before = earlier_run(run_dir, world)
    proc = subprocess.run(
        train_cmd(run_dir, tmp_path / "cache", "--resume", resume, steps=5),
        env=env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and expected in last, proc.stderr[-2000:]
    assert tree(run_dir) == before  # config.yaml, metrics, samples and the checkpoint untouched


def test_save_every_0_still_leaves_the_final_weights(tmp_path):
    from fastdapo.export import export_checkpoint

    run_dir = tmp_path / "run"
    proc = subprocess.run(
        train_cmd(run_dir, tmp_path / "cache", steps=1, save_every=0),
        env=env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, unwrap(proc.stderr)[-3000:]
    assert [s for s, _ in C.list_checkpoints(run_dir / "checkpoints")] == [1]
    assert steps_logged(run_dir) == [0, 1]
    export_checkpoint(run_dir, tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").exists()
