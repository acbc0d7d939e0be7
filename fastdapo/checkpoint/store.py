"""Checkpoints that lose nothing: DeepSpeed engine state plus every piece of trainer state.

One directory per saved step, under RUN_DIR/checkpoints/:

    step_00000010/
      engine/                    DeepSpeed: model, optimizer and LR-scheduler state (each rank's shards)
      zero_to_fp32.py            DeepSpeed's offline consolidation script (ZeRO >= 1)
      trainer_state_rank<r>.pt   step, prompt-stream position, mini-batch shuffle RNG, Python / NumPy /
                                 torch (and CUDA) RNG states, non-finite update counter: one per rank
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

import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from fastdapo.runtime import distributed as D

log = logging.getLogger(__name__)

FORMAT = 1
ENGINE_TAG = "engine"
MANIFEST = "manifest.json"
HF_DIR = "hf"
_STEP_RE = re.compile(r"^step_(\d+)$")


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


def problem(path: Path) -> Optional[str]:
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


def checkpoint_root(path: Path) -> Optional[Path]:
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


def resolve(path: str | Path, step: Optional[int] = None) -> Path:
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


# --- RNG state --------------------------------------------------------------------------------------

def capture_rng() -> dict:
    """Python, NumPy and torch (CPU and CUDA) global RNG states; generation samples from torch's."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _shuffle_state(rng: random.Random):
    version, internal, gauss = rng.getstate()
    return (version, list(internal), gauss)


# --- file system helpers ----------------------------------------------------------------------------

def _fsync_tree(path: Path) -> None:
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
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


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    """Rename first so a half-deleted checkpoint can never look like a usable one."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


# --- saving and resuming ----------------------------------------------------------------------------

class Checkpointer:
    """Saves and restores one run's checkpoints (collective: every rank calls save/resume)."""

    def __init__(self, run_dir: Path, cfg, engine, model_config, tokenizer, *, stream, shuffle_rng: random.Random,
                 actor):
        self.root = Path(run_dir) / "checkpoints"
        self.cfg = cfg
        self.engine, self.model_config, self.tokenizer = engine, model_config, tokenizer
        self.stream, self.shuffle_rng, self.actor = stream, shuffle_rng, actor
        self.save_every, self.keep_last = cfg.run.save_every, max(1, cfg.run.keep_last)
        self.last_saved: Optional[int] = None
        self.resumed_from: Optional[Path] = None

    @property
    def enabled(self) -> bool:
        return self.save_every > 0

    def due(self, step: int) -> bool:
        return self.enabled and step % self.save_every == 0

    def snapshot(self, step: int) -> dict:
        """Everything besides the engine that a resumed run needs to continue exactly from `step`."""
        return {"format": FORMAT, "step": step, "rank": D.rank(), "world_size": D.world_size(),
                "stream": self.stream.state_dict(), "shuffle_rng": _shuffle_state(self.shuffle_rng),
                "rng": capture_rng(), "nonfinite_in_a_row": self.actor.nonfinite_in_a_row}

    def save(self, step: int, state: Optional[dict] = None) -> Optional[Path]:
        """Checkpoint the engine's current weights as step `step`; `state` (from `snapshot`) defaults
        to the trainer state right now. A step already saved by this run is not written twice."""
        if not self.enabled or step == self.last_saved:
            return None
        t0 = time.perf_counter()
        name = step_dir_name(step)
        final, tmp = self.root / name, self.root / f".tmp-{name}"
        if D.is_main():
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed while saving
        D.barrier()
        self.engine.save_checkpoint(str(tmp), tag=ENGINE_TAG, save_latest=False)
        # Taken after the engine save, so the state saved is the state this run continues with.
        torch.save(state if state is not None else self.snapshot(step), tmp / state_file(D.rank()))
        D.barrier()
        if D.is_main():
            self._finish(tmp, final, step)
        D.barrier()
        self.last_saved = step
        log.info("checkpoint %s (%.1fs)", final, time.perf_counter() - t0)
        return final

    def _finish(self, tmp: Path, final: Path, step: int) -> None:
        from fastdapo.config import save_config

        self.model_config.save_pretrained(tmp / HF_DIR)
        gen_cfg = getattr(self.engine.module.model, "generation_config", None)
        if gen_cfg is not None:
            gen_cfg.save_pretrained(tmp / HF_DIR)
        self.tokenizer.save_pretrained(str(tmp / HF_DIR))
        save_config(self.cfg, tmp / "config.yaml")
        _fsync_tree(tmp)
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        _write_json_atomic(tmp / MANIFEST, {
            "format": FORMAT, "step": step, "world_size": D.world_size(),
            "zero_stage": self.engine.zero_optimization_stage(), "dtype": str(self.cfg.model.dtype),
            "model_dtype": str(next(self.engine.module.parameters()).dtype).replace("torch.", ""),
            "engine_tag": ENGINE_TAG, "created": time.time(), "files": files})
        if final.exists():
            _remove(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
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
                _remove(p)

    # --- resume -------------------------------------------------------------------------------------

    def candidates(self, mode: str) -> tuple[list[Path], bool]:
        """(checkpoints to try, newest first; whether the first one was asked for explicitly)."""
        if mode == "never":
            existing = [p for _, p in list_checkpoints(self.root)]
            if existing:
                raise RuntimeError(
                    f"run.resume=never, but {self.root} already holds {len(existing)} checkpoint(s) of an "
                    "earlier run: resume it (--resume auto), or use another run.output_dir")
            return [], False
        if mode == "auto":
            return [p for _, p in reversed(list_checkpoints(self.root))], False
        path = Path(mode)
        if is_checkpoint_dir(path):
            return [path], True
        root = checkpoint_root(path)
        if root is None:
            raise FileNotFoundError(f"run.resume={mode}: neither a checkpoint nor a run directory with checkpoints/")
        return [p for _, p in reversed(list_checkpoints(root))], False

    def resume(self, mode: str) -> int:
        """Restore the newest usable checkpoint (see `candidates`); the step to continue after (0 = fresh)."""
        paths, explicit = self.candidates(mode)
        for path in paths:
            why = problem(path)
            ok = D.all_reduce([0.0 if why else 1.0], "min")[0] > 0  # every rank must agree
            if not ok:
                if explicit:
                    raise RuntimeError(f"run.resume={mode}: checkpoint is unusable: {why or 'damaged on another rank'}")
                log.warning("checkpoint %s is unusable (%s); trying the previous one", path, why or "another rank")
                continue
            step, err = self._load(path)
            if D.all_reduce([0.0 if err else 1.0], "min")[0] > 0:
                self.resumed_from, self.last_saved = path, step
                log.info("resumed from %s (step %d)", path, step)
                if step >= self.cfg.run.steps:
                    log.info("the run already reached run.steps=%d; raise it to train further", self.cfg.run.steps)
                return step
            if explicit:
                raise RuntimeError(f"run.resume={mode}: loading {path} failed: {err}")
            log.warning("loading checkpoint %s failed (%s); trying the previous one", path, err or "another rank")
        if paths:
            log.warning("no usable checkpoint in %s; starting from scratch", self.root)
        return 0

    def _load(self, path: Path) -> tuple[int, Optional[str]]:
        try:
            manifest = read_manifest(path)
            if int(manifest["world_size"]) != D.world_size():
                return 0, (f"saved by {manifest['world_size']} process(es), this run has {D.world_size()} "
                           "(DeepSpeed ZeRO checkpoints need the same data-parallel size)")
            loaded, _ = self.engine.load_checkpoint(str(path), tag=manifest.get("engine_tag", ENGINE_TAG))
            if loaded is None:
                return 0, "DeepSpeed could not load the engine state"
            state = torch.load(path / state_file(D.rank()), map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged file can fail in many ways; the caller falls back
            return 0, f"{type(e).__name__}: {e}"
        self.stream.load_state_dict(state["stream"])
        version, internal, gauss = state["shuffle_rng"]
        self.shuffle_rng.setstate((version, tuple(internal), gauss))
        self.actor.nonfinite_in_a_row = int(state["nonfinite_in_a_row"])
        restore_rng(state["rng"])
        return int(state["step"]), None
