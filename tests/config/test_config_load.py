import dataclasses
from pathlib import Path

import pytest
import yaml

from fastdapo.config import Config, ConfigError, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[2]

# The toy run as it was before defaults became the paper recipe (old configs/toy.yaml + schema
# defaults, toy keys renamed into their own section), at the learning rate measured since (2e-4, was 5e-4):
# configs/toy.yaml must keep reproducing it.
OLD_TOY_RUN = {
    "model": dict(
        path="toy",
        dtype="auto",
        attn_implementation="auto",
        use_liger="auto",
        gradient_checkpointing=False,
        check_fidelity=True,
        lora=dict(rank=0, alpha=16.0, dropout=0.0, target_modules=["all-linear"]),
    ),
    "toy": dict(
        hidden_size=128,
        layers=2,
        heads=4,
        sft_steps=1200,
        sft_lr=1e-3,
        sft_noise=0.0,
        sft_format_noise=0.75,
        cache_dir=".cache/fastdapo",
        eval_size=256,
        task="arithmetic",
        max_operand=20,
        chain_max_steps=16,
        chain_problems=2048,
    ),
    "data": dict(train_files=[], eval_files=[], max_prompt_length=2048, apply_chat_template=True, shuffle=True),
    "rollout": dict(
        engine="torch",
        n=8,
        temperature=1.0,
        top_p=1.0,
        max_response_length=24,
        batch_size=512,
        seed_per_prompt=False,
        eval_n=4,
        eval_temperature=1.0,
        eval_top_p=1.0,
        gpu_memory_utilization=None,
        tensor_parallel_size=1,
        max_staleness=0,
        generator_threads=0,
    ),
    "algorithm": dict(
        eps_low=0.2,
        eps_high=0.28,
        dual_clip=None,
        train_batch_size=32,
        gen_batch_size=48,
        max_num_gen_batches=4,
        dynamic_sampling=True,
        mini_batch_size=8,
        ppo_epochs=1,
        max_tokens_per_micro_batch=8192,
        share_prompts=True,
        overlong_shaping=True,
        overlong_buffer_len=8,
        overlong_penalty_factor=1.0,
        overlong_filtering=False,
        kernel_impl="auto",
        reward_timeout_s=5.0,
        reward_workers=0,
        log_ratio_bound=20.0,
        loss_agg_mode="token-mean",
        reward="dapo",
        reward_boxed_fallback=False,
        rollout_correction="auto",
        rollout_correction_cap=2.0,
    ),
    "optimizer": dict(lr=2e-4, warmup_steps=2, weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.999),
    "distributed": dict(
        zero_stage=2,
        backend="auto",
        offload_optimizer=False,
        offload_params=False,
        deepspeed_config=None,
        sequence_parallel_size=1,
        timeout_s=600,
    ),
    "run": dict(
        output_dir="runs/toy",
        steps=40,
        seed=0,
        device="auto",
        eval_every=0,
        save_every=10,
        keep_last=2,
        resume="auto",
        log_samples_every=10,
        max_nonfinite_skips=3,
        progress=True,
        tensorboard=False,
        wandb=False,
        wandb_project="fastdapo",
    ),
}

# DAPO paper recipe (verl DAPO recipe): what a key missing from a real config becomes.
PAPER = {
    "optimizer.lr": 1e-6,
    "optimizer.warmup_steps": 10,
    "optimizer.weight_decay": 0.1,
    "optimizer.grad_clip": 1.0,
    "optimizer.beta1": 0.9,
    "optimizer.beta2": 0.999,
    "algorithm.train_batch_size": 512,
    "algorithm.mini_batch_size": 32,
    "algorithm.gen_batch_size": 1536,
    "algorithm.max_num_gen_batches": 10,
    "algorithm.eps_low": 0.2,
    "algorithm.eps_high": 0.28,
    "algorithm.dual_clip": 3.0,
    "algorithm.overlong_buffer_len": 4096,
    "algorithm.overlong_penalty_factor": 1.0,
    "algorithm.log_ratio_bound": 20.0,
    "algorithm.loss_agg_mode": "token-mean",
    "algorithm.reward": "dapo",
    "algorithm.dynamic_sampling": True,
    "algorithm.overlong_shaping": True,
    "rollout.n": 16,
    "rollout.max_response_length": 20480,
    "rollout.temperature": 1.0,
    "rollout.top_p": 1.0,
    "rollout.eval_temperature": 1.0,
    "rollout.eval_top_p": 0.7,
    "rollout.eval_n": 32,
    "data.max_prompt_length": 2048,
}


def _get(cfg, dotted):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def test_toy_yaml_reproduces_the_toy_run_exactly():
    assert config_to_dict(load_config(None)) == OLD_TOY_RUN


@pytest.mark.parametrize("key", sorted(PAPER))
def test_defaults_are_the_paper_recipe(key):
    assert _get(Config(), key) == PAPER[key]


@pytest.mark.parametrize("key", sorted(PAPER))
def test_32b_recipe_states_every_paper_value(key):
    section, name = key.split(".")
    data = yaml.safe_load((ROOT / "configs" / "dapo-qwen2.5-32b.yaml").read_text())
    assert data[section][name] == PAPER[key]


def test_real_config_defaults_are_not_toy_values(tmp_path):
    f = tmp_path / "real.yaml"
    f.write_text("model: {path: /models/some-model}\ndata: {train_files: [train.parquet]}\n")
    cfg = load_config(f)
    assert cfg.rollout.max_response_length == 20480 and cfg.run.output_dir == "runs/dapo"
    assert cfg.model.gradient_checkpointing


def test_model_path_is_required(tmp_path):
    f = tmp_path / "nopath.yaml"
    f.write_text("run: {steps: 3}\n")
    with pytest.raises(
        ConfigError, match=r"^model.path is required \(a local Hugging Face model directory, or 'toy'\)$"
    ):
        load_config(f)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.algorithm.eps_low == 0.2 and cfg.algorithm.eps_high == 0.28


def test_overrides_are_typed():
    c = load_config(
        None,
        [
            "algorithm.eps_high=0.3",
            "run.steps=5",
            "algorithm.dual_clip=3",
            "data.train_files=[a.parquet, b.jsonl]",
            "algorithm.overlong_filtering=true",
            "optimizer.lr=1e-3",
        ],
    )
    assert c.algorithm.eps_high == 0.3 and c.run.steps == 5 and c.algorithm.dual_clip == 3.0
    assert c.optimizer.lr == 1e-3
    assert c.data.train_files == ["a.parquet", "b.jsonl"] and c.algorithm.overlong_filtering is True


def test_bad_yaml_file_is_named(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run: {steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(f)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_every_section_is_a_dataclass_with_a_yaml_home():
    toy = yaml.safe_load((ROOT / "configs" / "toy.yaml").read_text())
    paper = yaml.safe_load((ROOT / "configs" / "dapo-qwen2.5-32b.yaml").read_text())
    for f in dataclasses.fields(Config):
        assert dataclasses.is_dataclass(f.default_factory())
        assert f.name in toy or f.name in paper


def test_on_and_off_reach_a_string_field_as_written():
    """YAML 1.1 reads `off` as false: `--set model.use_liger=off` and `use_liger: off` in a file mean "off"."""
    from fastdapo.config import load_config

    assert load_config(None, ["model.use_liger=off"]).model.use_liger == "off"
    assert load_config(None, ["model.use_liger=on"]).model.use_liger == "on"
