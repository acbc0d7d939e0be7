"""Which checkpoint a run resumes from, decided before the run writes anything to its directory.

Damaged checkpoints (an unfinished or truncated save) are skipped for the previous one, with a
warning. Another process count or ZeRO stage is bridged by DeepSpeed's universal checkpoint (see
:mod:`fastdapo.checkpoint.reshard`); a complete checkpoint that this run still cannot load (to or from
ZeRO-0) is refused, never silently replaced by a fresh start: the earlier run's files stay as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastdapo.checkpoint.reshard import ensure_universal, layout_change, needs_universal, unconvertible
from fastdapo.checkpoint.store import (
    ENGINE_TAG,
    CheckpointError,
    checkpoint_root,
    is_checkpoint_dir,
    list_checkpoints,
    problem,
    read_manifest,
)
from fastdapo.runtime import distributed as D

log = logging.getLogger(__name__)


def candidates(root: Path, mode: str) -> tuple[list[Path], bool]:
    """(checkpoints to try, newest first; whether the first one was asked for explicitly)."""
    if mode == "never":
        existing = [p for _, p in list_checkpoints(root)]
        if existing:
            raise CheckpointError(
                f"run.resume=never, but {root} already holds {len(existing)} checkpoint(s) of an "
                "earlier run: resume it (--resume auto), or use another run.output_dir"
            )
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


def sequence_parallel_change(manifest: dict, world_size: int, zero_stage: int, sp_size: int) -> str | None:
    """Why a checkpoint cannot resume under this run's sequence parallelism, or None. DeepSpeed files the
    engine state of a sequence-parallel run per group rank (as model-parallel ranks), which its universal
    conversion would read as tensor-parallel slices: such checkpoints resume only in their own layout."""
    saved = int(manifest.get("sequence_parallel_size", 1))
    if saved == sp_size and (saved == 1 or layout_change(manifest, world_size, zero_stage) is None):
        return None
    return (
        f"it was saved with distributed.sequence_parallel_size={saved}, {manifest.get('world_size')} process(es) and "
        f"ZeRO-{manifest.get('zero_stage')}, and a checkpoint resumes with sequence parallelism only in that same "
        f"layout; rerun with distributed.sequence_parallel_size={saved}, {manifest.get('world_size')} process(es) "
        f"and ZeRO-{manifest.get('zero_stage')}, or start anew in another run.output_dir (nothing was written)"
    )


def choose_checkpoint(run_dir: Path, mode: str, world_size: int, zero_stage: int, sp_size: int = 1) -> Path | None:
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
        manifest = read_manifest(path)
        why = sequence_parallel_change(manifest, world_size, zero_stage, sp_size)
        if why:
            raise CheckpointError(f"cannot resume from {path}: {why}")
        why = unconvertible(manifest, world_size, zero_stage)
        if why:
            raise CheckpointError(
                f"cannot resume from {path}: {layout_change(manifest, world_size, zero_stage)}: {why}; rerun with "
                f"ZeRO-{manifest.get('zero_stage')} and {manifest.get('world_size')} process(es), or start anew in "
                "another run.output_dir (nothing was written)"
            )
        if needs_universal(manifest, world_size, zero_stage):
            _prepare_universal(path, manifest, world_size, zero_stage)
        return path
    if paths:
        raise CheckpointError(
            f"no usable checkpoint among the {len(paths)} in {paths[0].parent} (see the warnings above); nothing "
            "was written: move them away to start over, or use another run.output_dir"
        )
    return None


def _prepare_universal(path: Path, manifest: dict, world_size: int, zero_stage: int) -> None:
    """Rank 0 converts the checkpoint for this layout (once, into ``universal/``, atomically); a failure is
    refused here, before the run writes anything, and leaves the checkpoint as it was."""
    err = None
    if D.is_main():
        try:
            ensure_universal(path, manifest.get("engine_tag", ENGINE_TAG))
        except Exception as e:  # a failed conversion removes its temporary files
            err = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
    if D.all_reduce([0.0 if err else 1.0], "min")[0] == 0:
        raise CheckpointError(
            f"cannot resume from {path}: {layout_change(manifest, world_size, zero_stage)}: DeepSpeed's universal "
            f"checkpoint conversion failed ({err or 'on rank 0'}); rerun with ZeRO-{manifest.get('zero_stage')} and "
            f"{manifest.get('world_size')} process(es), or start anew in another run.output_dir (nothing was written)"
        )
