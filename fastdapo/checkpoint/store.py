"""The checkpoint store: on-disk format, finding checkpoints and telling complete ones from damaged ones.

One directory per saved step, under RUN_DIR/checkpoints/:

    step_00000010/
      engine/                    DeepSpeed: model, optimizer and LR-scheduler state (each rank's shards)
      zero_to_fp32.py            DeepSpeed's offline consolidation script (ZeRO >= 1)
      trainer_state_rank<r>.pt   step plus every trainer component's state_dict() by name (prompt
                                 stream, shuffle RNG, global RNGs, non-finite counter, ...): one per rank
      hf/                        config.json, generation_config.json and the tokenizer (for export)
      config.yaml                the run config that wrote it
      manifest.json              written last: step, world size, ZeRO stage, dtype, every file + size

Writing is atomic: every rank writes into `.tmp-step_00000010/`; after a barrier rank 0 adds `hf/`,
flushes everything to disk, writes the manifest and renames the directory. A `step_*` directory is
therefore complete unless damaged later, and the manifest (file list with sizes) lets the loader
notice that: a missing manifest or a missing / truncated file makes it fall back, with a warning, to
the previous checkpoint. Only the newest `run.keep_last` complete checkpoints are kept.

All ranks must see RUN_DIR (a shared file system on multi-node runs), as DeepSpeed itself assumes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 2  # 1: the same components flat at the top level of the trainer state
ENGINE_TAG = "engine"
MANIFEST = "manifest.json"
HF_DIR = "hf"
_STEP_RE = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or resumed from; the message is one line for the user."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def state_file(rank: int) -> str:
    return f"trainer_state_rank{rank}.pt"


# --- finding and checking checkpoints -------------------------------------------------------------


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `step_*` directory under `root`, oldest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(found)


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def problem(path: Path) -> str | None:
    """Why the checkpoint at `path` is unusable, or None when it is complete."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        return "no manifest.json (the save did not finish)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest.json ({e})"
    files = manifest.get("files", {})
    for r in range(int(manifest.get("world_size", 1))):
        if state_file(r) not in files:
            return f"{state_file(r)} is not in the manifest"
    for rel, size in files.items():
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        if f.stat().st_size != size:
            return f"{rel} has {f.stat().st_size} bytes, {size} expected (truncated or overwritten)"
    return None


def checkpoint_root(path: Path) -> Path | None:
    """RUN_DIR/checkpoints for a run directory, or the directory itself when it holds step_* dirs."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if list_checkpoints(path):
        return path
    return None


def is_checkpoint_dir(path: Path) -> bool:
    path = Path(path)
    return (path / MANIFEST).is_file() or ((path / ENGINE_TAG).is_dir() and bool(_STEP_RE.match(path.name)))


def resolve(path: str | Path, step: int | None = None) -> Path:
    """A complete checkpoint from a run directory (latest, or `step`) or a checkpoint directory.

    Damaged checkpoints are skipped with a warning when looking for the latest one; an explicitly
    named one (a checkpoint directory, or `step`) must be complete.
    """
    path = Path(path)
    if is_checkpoint_dir(path):
        candidates = [path]
    else:
        root = checkpoint_root(path)
        if root is None:
            raise FileNotFoundError(f"{path}: neither a run directory with checkpoints/ nor a checkpoint")
        found = list_checkpoints(root)
        if step is not None:
            found = [(s, p) for s, p in found if s == step]
            if not found:
                raise FileNotFoundError(f"{root}: no checkpoint for step {step}")
        candidates = [p for _, p in reversed(found)]
        if not candidates:
            raise FileNotFoundError(f"{root}: no checkpoints")
    strict = len(candidates) == 1 and (step is not None or candidates[0] == path)
    for c in candidates:
        why = problem(c)
        if why is None:
            return c
        if strict:
            raise FileNotFoundError(f"checkpoint {c} is unusable: {why}")
        log.warning("skipping checkpoint %s: %s", c, why)
    raise FileNotFoundError(f"{path}: no complete checkpoint")


# --- file system helpers ----------------------------------------------------------------------------


def fsync_tree(path: Path) -> None:
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


FULL_BELOW = 64 * 2**20  # free bytes under which a failed write is put down to the full file system


def free_bytes(path: Path) -> int | None:
    """Free space (for this user) on the file system holding `path`, or None if it cannot be read."""
    for p in (Path(path), *Path(path).parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def write_error(exc: BaseException, path: Path, free: int | None = None) -> BaseException:
    """A one-line CheckpointError for a failed write of checkpoint `path`; anything else is returned unchanged.

    A full disk shows up in many forms (ENOSPC, torch's zip writer: "file write failed", "unexpected pos
    N vs M"), so it is decided from the file system's free space right after the failure (`free`), not
    from the message; a quota (EDQUOT) has space left and is told by its errno."""
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    full = free is not None and free < FULL_BELOW
    if full or any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) for e in chain):
        left = f"{_size(free)} free there" if free is not None else "free space unknown"
        return CheckpointError(f"no space left on device while writing checkpoint {path} ({left})")
    os_errors = [e for e in chain if isinstance(e, OSError)]
    if os_errors:
        return CheckpointError(f"writing checkpoint {path} failed: {os_errors[0].strerror or os_errors[0]}")
    return exc


def remove_checkpoint(path: Path) -> None:
    """Rename first so a half-deleted checkpoint can never look like a usable one."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)
