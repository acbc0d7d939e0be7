"""Saving and resuming a run: the DeepSpeed engine (model, optimizer, LR schedule) plus named
components that save and load their own state (see :mod:`fastdapo.checkpoint.components`).

Every call is collective: every rank saves and resumes. The layout, atomic write and damage checks
are those of :mod:`fastdapo.checkpoint.store`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import torch

from fastdapo.actor.ds_engine import load_universal
from fastdapo.checkpoint.components import HFAssets, Stateful
from fastdapo.checkpoint.config_changes import apply_learning_rate
from fastdapo.checkpoint.reshard import (
    UNIVERSAL_DIR,
    layout_change,
    needs_universal,
    saved_param_groups,
)
from fastdapo.checkpoint.store import (
    ENGINE_TAG,
    FORMAT,
    HF_DIR,
    MANIFEST,
    CheckpointError,
    free_bytes,
    fsync_dir,
    fsync_tree,
    list_checkpoints,
    problem,
    read_manifest,
    remove_checkpoint,
    state_file,
    step_dir_name,
    write_error,
    write_json_atomic,
)
from fastdapo.config import Config, save_config
from fastdapo.runtime import distributed as D
from fastdapo.runtime import sequence_parallel as SP

log = logging.getLogger(__name__)


def _upgrade(state: dict) -> dict:
    """Format 1 kept the components flat at the top level, under slightly different shapes."""
    if int(state.get("format", 1)) >= 2:
        return state
    version, internal, gauss = state["shuffle_rng"]
    return {
        **state,
        "components": {
            "stream": state["stream"],
            "rng": state["rng"],
            "shuffle_rng": {"version": version, "internal": list(internal), "gauss": gauss},
            "nonfinite": {"nonfinite_in_a_row": state["nonfinite_in_a_row"]},
        },
    }


class Checkpointer:
    """One run's checkpoints. ``components``: name -> object with ``state_dict()`` / ``load_state_dict()``,
    saved per rank; ``assets`` go into ``hf/`` for export."""

    def __init__(self, run_dir: Path, cfg: Config, engine, components: dict[str, Stateful], assets: HFAssets):
        self.root = Path(run_dir) / "checkpoints"
        self.cfg = cfg
        self.engine, self.components, self.assets = engine, components, assets
        self.save_every, self.keep_last = cfg.run.save_every, max(1, cfg.run.keep_last)
        self.last_saved: int | None = None
        self.resumed_from: Path | None = None

    def due(self, step: int) -> bool:
        """A periodic checkpoint; the last step and a stop on a signal are saved whatever save_every says."""
        return self.save_every > 0 and step % self.save_every == 0

    def snapshot(self, step: int) -> dict:
        """Everything besides the engine that a resumed run needs to continue exactly from `step`."""
        return {
            "format": FORMAT,
            "step": step,
            "rank": D.rank(),
            "world_size": D.world_size(),
            "components": {name: c.state_dict() for name, c in self.components.items()},
        }

    def save(self, step: int, state: dict | None = None) -> Path | None:
        """Checkpoint the engine's current weights as step `step`; `state` (from `snapshot`) defaults
        to the trainer state right now. A step already saved by this run is not written twice."""
        if step == self.last_saved:
            return None
        t0 = time.perf_counter()
        name = step_dir_name(step)
        final, tmp = self.root / name, self.root / f".tmp-{name}"
        if D.is_main():
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed while saving
        D.barrier()
        try:
            self.engine.save_checkpoint(str(tmp), tag=ENGINE_TAG, save_latest=False)
            # Taken after the engine save, so the state saved is the state this run continues with.
            torch.save(state if state is not None else self.snapshot(step), tmp / state_file(D.rank()))
            D.barrier()
            if D.is_main():
                self._finish(tmp, final, step)
        except Exception as e:
            free = free_bytes(self.root)  # measured before the partial checkpoint's space is given back
            shutil.rmtree(tmp, ignore_errors=True)
            err = write_error(e, final, free)
            if isinstance(err, CheckpointError):  # earlier checkpoints are only pruned after a complete save
                left = f"{tmp} is left behind" if tmp.exists() else "the partial checkpoint was removed"
                err = CheckpointError(f"{err}; {left}, earlier checkpoints are untouched")
            raise err from e
        D.barrier()
        self.last_saved = step
        log.info("checkpoint %s (%.1fs)", final, time.perf_counter() - t0)
        return final

    def _finish(self, tmp: Path, final: Path, step: int) -> None:
        self.assets.save(tmp / HF_DIR)
        save_config(self.cfg, tmp / "config.yaml")
        fsync_tree(tmp)
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        write_json_atomic(
            tmp / MANIFEST,
            {
                "format": FORMAT,
                "step": step,
                "world_size": D.world_size(),
                "zero_stage": self.engine.zero_optimization_stage(),
                "sequence_parallel_size": SP.size(),
                "dtype": str(self.cfg.model.dtype),
                "model_dtype": str(next(self.engine.module.parameters()).dtype).replace("torch.", ""),
                "engine_tag": ENGINE_TAG,
                "created": time.time(),
                "files": files,
            },
        )
        if final.exists():
            remove_checkpoint(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        self.prune()

    def prune(self) -> None:
        """Keep the newest `keep_last` complete checkpoints; drop older ones and damaged leftovers."""
        found = list(reversed(list_checkpoints(self.root)))
        complete = [(s, p) for s, p in found if problem(p) is None]
        keep = {p for _, p in complete[: self.keep_last]}
        newest_ok = complete[0][0] if complete else None
        for s, p in found:
            if p not in keep and (newest_ok is None or s < newest_ok or problem(p) is None):
                log.info("removing old checkpoint %s", p)
                remove_checkpoint(p)

    # --- resume -------------------------------------------------------------------------------------

    def resume(self, path: Path | None) -> int:
        """Restore the checkpoint at `path` (from `choose_checkpoint`); the step to continue after (0 = fresh).
        A failed load is an error, not a fresh start: the engine may already hold part of the state."""
        if path is None:
            return 0
        step, err = self._load(path)
        if D.all_reduce([0.0 if err else 1.0], "min")[0] == 0:
            raise CheckpointError(f"loading checkpoint {path} failed: {err or 'on another rank'}")
        apply_learning_rate(self.engine, self.cfg.optimizer.lr)  # a changed optimizer.lr takes effect
        self.resumed_from, self.last_saved = path, step
        log.info("resumed from %s (step %d)", path, step)
        if step >= self.cfg.run.steps:
            log.info("the run already reached run.steps=%d; raise it to train further", self.cfg.run.steps)
        return step

    def _load(self, path: Path) -> tuple[int, str | None]:
        try:
            manifest = read_manifest(path)
            tag = manifest.get("engine_tag", ENGINE_TAG)
            if needs_universal(manifest, D.world_size(), self.engine.zero_optimization_stage()):
                loaded = self._load_universal(path, tag)
            else:
                loaded, _ = self.engine.load_checkpoint(str(path), tag=tag)
            if loaded is None:
                return 0, "DeepSpeed could not load the engine state"
            # The stream position, shuffle RNG and counters are the same on every rank: rank 0's serve any count.
            same_count = int(manifest["world_size"]) == D.world_size()
            source = D.rank() if same_count else 0
            state = _upgrade(torch.load(path / state_file(source), map_location="cpu", weights_only=True))
            missing = sorted(set(self.components) - set(state["components"]))
            if missing:
                return 0, f"no saved state for {', '.join(missing)}"
        except Exception as e:  # a damaged file can fail in many ways; the caller falls back
            return 0, f"{type(e).__name__}: {e}"
        step = int(state["step"])
        change = layout_change(manifest, D.world_size(), self.engine.zero_optimization_stage())
        if change and D.is_main():
            log.info("resuming across a layout change (%s) through DeepSpeed's universal checkpoint", change)
        if not same_count and D.is_main():
            log.warning(
                "the per-rank sampling random states cannot carry over to another process count: each rank's "
                "are seeded from (run.seed, step, rank), so sampled responses differ from a run that kept "
                "%s process(es) unless rollout.seed_per_prompt=true",
                manifest["world_size"],
            )
        for name, component in self.components.items():
            if not same_count and getattr(component, "per_rank", False):
                component.reseed((self.cfg.run.seed * 1_000_003 + step) * 1009 + D.rank())
            else:
                component.load_state_dict(state["components"][name])
        return step, None

    def _load_universal(self, path: Path, tag: str):
        """Every rank loads the universal form that `choose_checkpoint` prepared into its own layout."""
        universal = path / UNIVERSAL_DIR
        if not (universal / tag).is_dir():
            raise CheckpointError(f"{universal} is missing (converted when the checkpoint is chosen)")
        with load_universal(self.engine):
            loaded, _ = self.engine.load_checkpoint(str(universal), tag=tag)
        base = getattr(self.engine.optimizer, "optimizer", self.engine.optimizer)
        for group, saved in zip(base.param_groups, saved_param_groups(universal, tag)):
            group.update(saved)  # weight decay differs between groups; ZeRO-3's loader copies the first's
        # ZeRO-3's loader gives all groups one shared step tensor, which Adam would advance once per group.
        for state in base.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].clone()
        return loaded
