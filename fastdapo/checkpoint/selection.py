"""Which checkpoint a run resumes from, decided before the run writes anything to its directory.

Damaged checkpoints (an unfinished or truncated save) are skipped for the previous one, with a
warning. A complete checkpoint that this run cannot load (another process count or ZeRO stage) is
refused, never silently replaced by a fresh start: the earlier run's files stay as they are.
"""
from __future__ import annotations

import logging
from pathlib import Path

from fastdapo.checkpoint.store import (
    CheckpointError,
    checkpoint_root,
    incompatibility,
    is_checkpoint_dir,
    list_checkpoints,
    problem,
    read_manifest,
)

log = logging.getLogger(__name__)


def candidates(root: Path, mode: str) -> tuple[list[Path], bool]:
    """(checkpoints to try, newest first; whether the first one was asked for explicitly)."""
    if mode == "never":
        existing = [p for _, p in list_checkpoints(root)]
        if existing:
            raise CheckpointError(
                f"run.resume=never, but {root} already holds {len(existing)} checkpoint(s) of an "
                "earlier run: resume it (--resume auto), or use another run.output_dir")
        return [], False
    if mode == "auto":
        return [p for _, p in reversed(list_checkpoints(root))], False
    path = Path(mode)
    if is_checkpoint_dir(path):
        return [path], True
    other_root = checkpoint_root(path)
    if other_root is None:
        raise CheckpointError(f"run.resume={mode}: neither a checkpoint nor a run directory with checkpoints/")
    return [p for _, p in reversed(list_checkpoints(other_root))], False


def choose_checkpoint(run_dir: Path, mode: str, world_size: int, zero_stage: int) -> Path | None:
    """The checkpoint to resume from (None: a fresh start), or CheckpointError naming why not."""
    root = Path(run_dir) / "checkpoints"
    paths, explicit = candidates(root, mode)
    for path in paths:
        why = problem(path)
        if why:
            if explicit:
                raise CheckpointError(f"run.resume={mode}: checkpoint is unusable: {why}")
            log.warning("checkpoint %s is unusable (%s); trying the previous one", path, why)
            continue
        why = incompatibility(read_manifest(path), world_size, zero_stage)
        if why:
            raise CheckpointError(
                f"cannot resume from {path}: {why}; a DeepSpeed ZeRO checkpoint loads only with the same process "
                "count and distributed.zero_stage: rerun with those, or start anew in another run.output_dir "
                "(nothing was written)")
        return path
    if paths:
        raise CheckpointError(
            f"no usable checkpoint among the {len(paths)} in {paths[0].parent} (see the warnings above); nothing "
            "was written: move them away to start over, or use another run.output_dir")
    return None
