"""`fastdapo train --dry-run`: every resolved value with its source, then exit without touching the run directory."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from fastdapo.config import Config, load_config
from fastdapo.config.provenance import config_sources, format_sources

ROOT = Path(__file__).resolve().parents[2]


def leaves(tree: dict) -> int:
    return sum(leaves(v) if isinstance(v, dict) else 1 for v in tree.values())


def dry_run(tmp_path, *args):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fastdapo.cli",
            "train",
            *args,
            "--dry-run",
            "--set",
            f"run.output_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_prints_every_key_with_its_source_and_creates_nothing(tmp_path):
    proc = dry_run(tmp_path, "--set", "algorithm.eps_low=0.1", "--resume", "never")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "algorithm.eps_high = 0.28  (default)" in lines
    assert "algorithm.eps_low = 0.1  (--set)" in lines
    assert "run.resume = never  (--set)" in lines
    assert "toy.sft_steps = 1200  (configs/toy.yaml)" in lines
    assert "model.path = toy  (configs/toy.yaml)" in lines
    assert f"run.output_dir = {tmp_path / 'run'}  (--set)" in lines
    assert len(lines) == leaves(dataclasses.asdict(Config()))  # nested sections (model.lora) included
    assert not (tmp_path / "run").exists()


def test_a_user_file_is_named_as_the_source(tmp_path):
    cfg_file = tmp_path / "mine.yaml"
    toy = (ROOT / "configs" / "toy.yaml").read_text()
    cfg_file.write_text(toy.replace("\nalgorithm:\n", "\nalgorithm:\n  eps_high: 0.3\n"))
    proc = dry_run(tmp_path, str(cfg_file))
    assert proc.returncode == 0, proc.stderr
    assert f"algorithm.eps_high = 0.3  ({cfg_file})" in proc.stdout.splitlines()
    assert f"toy.sft_steps = 1200  ({cfg_file})" in proc.stdout.splitlines()
    assert "algorithm.eps_low = 0.2  (default)" in proc.stdout.splitlines()


def test_a_bad_value_still_fails_with_one_line(tmp_path):
    proc = dry_run(tmp_path, "--set", "algorithm.eps_hgh=0.3")
    assert proc.returncode != 0 and proc.stdout == ""
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        "Error: unknown key 'algorithm.eps_hgh' (did you mean 'algorithm.eps_high'?)"
    ]


def test_a_section_set_as_a_mapping_marks_only_its_given_keys():
    sets = ["toy={hidden_size: 16}", "data.train_files=[]"]
    rows = {k: s for k, _, s in config_sources(load_config(None, sets), None, sets)}
    assert rows["toy.hidden_size"] == "--set" and rows["toy.layers"] == "configs/toy.yaml"
    assert rows["data.train_files"] == "--set" and rows["data.shuffle"] == "default"
    text = format_sources([("a.b", None, "default"), ("a.c", "", "x.yaml"), ("a.d", [1, "s"], "--set")])
    assert text.splitlines() == ["a.b = null  (default)", "a.c = ''  (x.yaml)", "a.d = [1, s]  (--set)"]
