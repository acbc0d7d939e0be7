import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastdapo.config import Config, ConfigError, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_toy_yaml_matches_defaults():
    # configs/toy.yaml documents the built-in run; it must not drift from the dataclass defaults
    assert config_to_dict(load_config(ROOT / "configs" / "toy.yaml")) == config_to_dict(Config())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.algorithm.eps_low == 0.2 and cfg.algorithm.eps_high == 0.28


def test_paper_recipe_hyperparameters():
    c = load_config(ROOT / "configs" / "dapo-qwen2.5-32b.yaml")
    a = c.algorithm
    assert (a.train_batch_size, a.gen_batch_size, a.mini_batch_size, a.max_num_gen_batches) == (512, 1536, 32, 10)
    assert (c.rollout.n, c.rollout.max_response_length, a.overlong_buffer_len) == (16, 20480, 4096)
    assert (c.optimizer.lr, c.optimizer.weight_decay, c.optimizer.grad_clip) == (1e-6, 0.1, 1.0)
    assert (c.rollout.eval_n, c.rollout.eval_top_p) == (32, 0.7)


def test_overrides_are_typed():
    c = load_config(None, ["algorithm.eps_high=0.3", "run.steps=5", "algorithm.dual_clip=3",
                           "data.train_files=[a.parquet, b.jsonl]", "algorithm.overlong_filtering=true", "optimizer.lr=1e-3"])
    assert c.algorithm.eps_high == 0.3 and c.run.steps == 5 and c.algorithm.dual_clip == 3.0
    assert c.optimizer.lr == 1e-3
    assert c.data.train_files == ["a.parquet", "b.jsonl"] and c.algorithm.overlong_filtering is True


@pytest.mark.parametrize("override, fragment", [
    ("algorithm.eps_hgh=0.3", "unknown key 'algorithm.eps_hgh' (did you mean 'algorithm.eps_high'?)"),
    ("algorithmm.eps_high=0.3", "unknown key 'algorithmm'"),
    ("algorithm.eps_low=1.5", "algorithm.eps_low: 1.5 is out of range; allowed [0, 1]"),
    ("rollout.top_p=0", "rollout.top_p: 0.0 is out of range; allowed (0, 1]"),
    ("rollout.engine=sglang", "rollout.engine: 'sglang' is not allowed; choose one of torch, hf, vllm"),
    ("run.steps=many", "run.steps: expected an integer"),
    ("algorithm.dynamic_sampling=3", "algorithm.dynamic_sampling: expected true or false"),
    ("algorithm.mini_batch_size=64", "algorithm.mini_batch_size: 64 exceeds algorithm.train_batch_size"),
    ("algorithm.overlong_buffer_len=24", "algorithm.overlong_buffer_len: 24 must be below"),
])
def test_bad_config_names_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


def test_bad_yaml_file_is_named(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run: {steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(f)


def test_cli_bad_key_exits_nonzero_with_one_line_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "fastdapo.cli", "train", "--set", "optimizer.learning_rate=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "optimizer.learning_rate" in lines[0] and "Traceback" not in proc.stderr


def test_every_field_has_a_yaml_home():
    # one-to-one mapping: each section of Config is a dataclass and appears in toy.yaml
    data = yaml.safe_load((ROOT / "configs" / "toy.yaml").read_text())
    for f in dataclasses.fields(Config):
        assert f.name in data
