"""The TensorBoard and W&B (offline) sinks against the real packages: a short toy run, its files read back."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "toy.hidden_size": 32,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 20,
    "toy.eval_size": 8,
    "rollout.n": 4,
    "rollout.max_response_length": 12,
    "rollout.eval_n": 1,
    "algorithm.overlong_buffer_len": 4,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 4,
    "algorithm.mini_batch_size": 4,
    "algorithm.dynamic_sampling": "false",
    "run.steps": 2,
    "run.progress": "false",
    "run.save_every": 0,
    "run.log_samples_every": 1,
    "run.tensorboard": "true",
    "run.wandb": "true",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sinks")
    sets = {**TINY, "toy.cache_dir": str(tmp / "cache"), "run.output_dir": str(tmp / "run")}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def logged_metrics(run_dir: Path) -> dict[int, dict]:
    """metrics.jsonl by step, without the step key itself."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r.pop("step"): r for r in rows}


def test_tensorboard_event_files_hold_every_metric(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    logged = logged_metrics(run_dir)
    names = {k for row in logged.values() for k in row}
    assert names and names <= set(events.Tags()["scalars"]), names - set(events.Tags()["scalars"])
    for step, row in logged.items():
        for name, value in row.items():
            [event] = [e for e in events.Scalars(name) if e.step == step]
            assert event.value == pytest.approx(value, rel=1e-6, abs=1e-6), (name, step)
    assert "samples/text_summary" in events.Tags()["tensors"]


def wandb_records(path: Path):
    """Records of a .wandb file: a 7-byte header, then LevelDB-log framing (32 KiB blocks, 7-byte record
    headers, records split FIRST/MIDDLE/LAST across blocks) around `wandb_internal_pb2.Record` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the rest of the block is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero fill at the end of a block
            pos += block - pos % block
            continue
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def test_wandb_offline_run_holds_every_metric(run_dir):
    run_id = (run_dir / "wandb_id").read_text().strip()
    [log] = (run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    history: dict[int, dict] = {}
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
    for step, row in logged_metrics(run_dir).items():
        assert step in history, f"step {step} missing from the W&B history"
        missing = set(row) - set(history[step])
        assert not missing, missing
        for name, value in row.items():
            assert history[step][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, step)
    # Sample tables go to the run's media files, one per logged step, with the samples.jsonl rows.
    sample_steps = sorted({json.loads(x)["step"] for x in (run_dir / "samples.jsonl").read_text().splitlines()})
    for step in sample_steps:
        [table] = log.parent.glob(f"files/media/table/samples_{step}_*.table.json")
        assert "response" in json.loads(table.read_text())["columns"]
