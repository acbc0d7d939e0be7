"""Resuming with another process count or ZeRO stage, through DeepSpeed's universal checkpoint.

A ZeRO checkpoint's shards follow the layout that saved them. DeepSpeed's ``ds_to_universal``
rewrites them as one fp32 weight + Adam moments + step per parameter, by name, which an engine of
any layout loads with ``checkpoint.load_universal``. The conversion is written once, next to the
original files (never changing them), into ``<checkpoint>/universal/``, atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
from pathlib import Path

import torch

from fastdapo.checkpoint.store import fsync_dir, fsync_tree

log = logging.getLogger(__name__)

UNIVERSAL_DIR = "universal"
_DONE = "converted.ok"  # written last: a universal/ without it is never used
# The engine's model-states file is named after its own stage, not the saved one (ZeRO-3 adds the DP rank).
_MODEL_STATES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")


def layout_change(manifest: dict, world_size: int, zero_stage: int) -> str | None:
    """'M process(es) ZeRO-a -> N ZeRO-b' when this run's layout differs from the checkpoint's, else None."""
    saved_ws, saved_stage = int(manifest.get("world_size", 1)), manifest.get("zero_stage")
    saved_stage = zero_stage if saved_stage is None else int(saved_stage)
    if (saved_ws, saved_stage) == (world_size, zero_stage):
        return None
    return f"{saved_ws} process(es) with ZeRO-{saved_stage} -> {world_size} with ZeRO-{zero_stage}"


def unconvertible(manifest: dict, world_size: int, zero_stage: int) -> str | None:
    """Why a layout change cannot be bridged, or None (also when there is no change)."""
    if layout_change(manifest, world_size, zero_stage) is None:
        return None
    if int(manifest.get("zero_stage", zero_stage)) == 0 or zero_stage == 0:
        return "DeepSpeed's universal checkpoint converts between ZeRO stages 1-3 only, not to or from ZeRO-0"
    return None


def needs_universal(manifest: dict, world_size: int, zero_stage: int) -> bool:
    return layout_change(manifest, world_size, zero_stage) is not None


def ensure_universal(path: Path, tag: str) -> Path:
    """The universal form of checkpoint `path` (converted now if not yet); call on one rank."""
    final = Path(path) / UNIVERSAL_DIR
    if (final / _DONE).is_file():
        return final
    tmp = Path(path) / f".tmp-{UNIVERSAL_DIR}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert(Path(path) / tag, tmp / tag)
        (tmp / _DONE).write_text("ok\n")
        fsync_tree(tmp)
        if final.exists():  # an unfinished conversion of an earlier attempt
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(Path(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert(src: Path, out: Path) -> None:
    from deepspeed import __version__ as ds_version
    from deepspeed.checkpoint import ds_to_universal

    args = argparse.Namespace(
        input_folder=str(src),
        output_folder=str(out),
        num_extract_workers=1,
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=True,
    )  # our saves carry no Megatron-style universal info
    with contextlib.redirect_stdout(io.StringIO()):  # the tool prints its progress
        ds_to_universal.main(args)
    saved = next(out / n for n in _MODEL_STATES if (out / n).is_file())
    for name in _MODEL_STATES:
        if not (out / name).exists():
            shutil.copyfile(saved, out / name)
    # optimizer_state.pt is written in the source stage's shape; each stage's loader reads other keys.
    state_path = out / "zero" / "optimizer_state.pt"
    sd = torch.load(state_path, map_location="cpu", weights_only=False)
    sd.setdefault("ds_version", ds_version)  # required by the ZeRO-1/2 loader
    if "optimizer_state_dict" not in sd:  # the ZeRO-3 loader takes the step from here
        step = next(iter(sorted((out / "zero").glob("*/step.pt"))), None)
        sd["optimizer_state_dict"] = {
            "state": {0: {"step": torch.load(step, weights_only=False) if step else 0}},
            "param_groups": sd["param_groups"],
        }
    torch.save(sd, state_path)


def saved_param_groups(universal: Path, tag: str) -> list[dict]:
    """Hyper-parameters of the saved optimizer groups (the ZeRO-3 loader gives every group the first's)."""
    sd = torch.load(Path(universal) / tag / "zero" / "optimizer_state.pt", map_location="cpu", weights_only=False)
    return [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
