"""A later run never destroys an earlier one: incompatible or unusable checkpoints are refused before
anything is written; a failed save (a full disk) is one line and leaves no temporary directory."""

import errno
import json
import logging
from pathlib import Path

import pytest
import torch

from fastdapo.checkpoint import store as C
from fastdapo.checkpoint.checkpointer import Checkpointer
from fastdapo.checkpoint.components import GlobalRNG
from fastdapo.checkpoint.selection import choose_checkpoint
from fastdapo.config import load_config


def fake_checkpoint(root: Path, step: int, world: int = 1, stage: int = 2) -> Path:
    d = root / C.step_dir_name(step)
    (d / "engine").mkdir(parents=True)
    (d / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 100)
    for r in range(world):
        (d / C.state_file(r)).write_bytes(b"s" * 10)
    files = {str(f.relative_to(d)): f.stat().st_size for f in d.rglob("*") if f.is_file()}
    (d / C.MANIFEST).write_text(json.dumps({"step": step, "world_size": world, "zero_stage": stage, "files": files}))
    return d


@pytest.mark.parametrize("saved, world, stage", [(2, 1, 0), (2, 2, 0), (0, 1, 0)])
def test_layout_change_to_or_from_zero0_is_refused(tmp_path, saved, world, stage):
    fake_checkpoint(tmp_path / "checkpoints", 4, world=2, stage=saved)
    with pytest.raises(C.CheckpointError) as e:
        choose_checkpoint(tmp_path, "auto", world, stage)
    msg = str(e.value)
    assert "\n" not in msg and f"2 process(es) with ZeRO-{saved} -> {world} with ZeRO-{stage}" in msg
    assert "ZeRO stages 1-3 only" in msg and "another run.output_dir" in msg and "nothing was written" in msg


def test_a_layout_change_that_fails_to_convert_is_refused_and_leaves_the_checkpoint(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "checkpoints", 4, world=2, stage=2)  # its shards are not real ZeRO files
    before = {f: f.read_bytes() for f in ckpt.rglob("*") if f.is_file()}
    with pytest.raises(C.CheckpointError) as e:
        choose_checkpoint(tmp_path, "auto", 1, 3)
    msg = str(e.value)
    assert "\n" not in msg and "universal checkpoint conversion failed" in msg and "nothing was written" in msg
    assert {f: f.read_bytes() for f in ckpt.rglob("*") if f.is_file()} == before  # no universal/, no temp dir


def test_matching_layout_resumes_from_the_newest_complete_checkpoint(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    older = fake_checkpoint(root, 2)
    (fake_checkpoint(root, 4) / C.MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        assert choose_checkpoint(tmp_path, "auto", 1, 2) == older
    assert "no manifest.json" in caplog.text
    assert choose_checkpoint(tmp_path / "fresh", "auto", 1, 2) is None


def test_only_damaged_checkpoints_are_refused_not_overwritten(tmp_path):
    (fake_checkpoint(tmp_path / "checkpoints", 3) / C.MANIFEST).unlink()
    with pytest.raises(C.CheckpointError, match="no usable checkpoint.*nothing was written"):
        choose_checkpoint(tmp_path, "auto", 1, 2)


def test_explicit_path_that_is_no_checkpoint_is_one_line(tmp_path):
    with pytest.raises(C.CheckpointError, match="neither a checkpoint nor a run directory"):
        choose_checkpoint(tmp_path, str(tmp_path / "nowhere"), 1, 2)


TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054")


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0"),
        TORCH_FULL,  # torch's zip writer: no errno, no "space" in the text
    ],
)
def test_full_disk_is_decided_by_free_space_not_by_the_message(exc):
    err = C.write_error(exc, Path("/r/checkpoints/step_00000003"), free=512)
    assert (
        str(err)
        == "no space left on device while writing checkpoint /r/checkpoints/step_00000003 (512 bytes free there)"
    )


def test_a_failure_with_space_left_is_not_called_a_full_disk():
    assert C.write_error(TORCH_FULL, Path("x"), free=10 * 2**30) is TORCH_FULL
    quota = C.write_error(OSError(errno.EDQUOT, "Disk quota exceeded"), Path("x"), free=10 * 2**30)
    assert str(quota) == "no space left on device while writing checkpoint x (10.0 GiB free there)"


def test_other_failures_pass_through_or_name_the_path():
    bug = ValueError("a bug")
    assert C.write_error(bug, Path("x"), free=2**40) is bug
    denied = C.write_error(PermissionError(13, "Permission denied"), Path("x"), free=2**40)
    assert str(denied) == "writing checkpoint x failed: Permission denied"


class _Assets:
    def save(self, path):
        Path(path).mkdir(parents=True)
        (Path(path) / "config.json").write_text("{}")


class _Engine:
    """Writes a shard with torch.save, as DeepSpeed does; `fail` stands in for the disk filling up."""

    module = torch.nn.Linear(2, 2)

    def __init__(self, fail: BaseException | None = None, tensor: torch.Tensor | None = None):
        self.fail, self.tensor = fail, tensor if tensor is not None else torch.zeros(4)

    def zero_optimization_stage(self) -> int:
        return 2

    def save_checkpoint(self, path, tag, save_latest):
        (Path(path) / tag).mkdir(parents=True)
        (Path(path) / tag / "partial.bin").write_bytes(b"half")
        if self.fail is not None:
            raise self.fail
        torch.save({"w": self.tensor}, Path(path) / tag / "mp_rank_00_model_states.pt")


def checkpoint_bytes(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), TORCH_FULL])
def test_save_on_a_full_disk_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, exc):
    cfg = load_config()
    ck = Checkpointer(tmp_path, cfg, _Engine(), {"rng": GlobalRNG()}, assets=_Assets())
    earlier = ck.save(1)
    before = checkpoint_bytes(earlier)
    ck.engine = _Engine(fail=exc)
    usage = type("usage", (), {"total": 6 * 2**20, "used": 6 * 2**20 - 512, "free": 512})
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage)  # what a full disk reports after the failure
    with pytest.raises(C.CheckpointError) as e:
        ck.save(2)
    assert str(e.value) == (
        f"no space left on device while writing checkpoint {tmp_path}/checkpoints/step_00000002 (512 bytes free "
        "there); the partial checkpoint was removed, earlier checkpoints are untouched"
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000001"]  # no .tmp-step_*
    assert checkpoint_bytes(earlier) == before and C.problem(earlier) is None
    assert ck.last_saved == 1


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB file system (needs the right to mount one: skipped elsewhere)."""
    import subprocess

    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_save_that_fills_a_real_file_system_is_one_line(tiny_tmpfs):
    ck = Checkpointer(tiny_tmpfs, load_config(), _Engine(tensor=torch.zeros(2**20)), {"rng": GlobalRNG()}, _Assets())
    with pytest.raises(C.CheckpointError, match=r"^no space left on device while writing checkpoint .*step_00000001 "):
        ck.save(1)  # 4 MiB of weights into 1 MiB: torch's own error, whatever its form
    assert list((tiny_tmpfs / "checkpoints").iterdir()) == []
