"""Smoke test of the end-to-end benchmark: config builders for both sides, then a 2-step run of
each framework (1 warm-up + 1 timed step) on a tiny random Qwen2 through the click command."""

import csv

import pytest
from click.testing import CliRunner

from fastdapo_bench.e2e import e2e_command, summarize
from fastdapo_bench.e2e_fastdapo import fastdapo_overrides
from fastdapo_bench.e2e_trl import grpo_config_kwargs

SPEC = {
    "prompts": 3,
    "group_size": 2,
    "max_new_tokens": 4,
    "steps": 2,
    "threads": 1,
    "model_dir": "unused",
    "eval_size": 4,
    "max_operand": 20,
    "seed": 0,
    "lr": 2e-4,
    "work_dir": "unused",
    "extra_sets": [],
}


def test_trl_config_matches_shape(tmp_path):
    pytest.importorskip("trl")
    from fastdapo_bench.e2e_trl import build_grpo_config

    args = build_grpo_config(SPEC, str(tmp_path))
    assert args.loss_type == "dapo" and args.num_generations == 2 and args.max_completion_length == 4
    assert args.generation_batch_size == args.per_device_train_batch_size == 6
    assert args.steps_per_generation == 1 and args.gradient_accumulation_steps == 1  # one update per step
    assert (args.beta, args.epsilon, args.epsilon_high) == (0.0, 0.2, 0.28)
    assert args.temperature == 1.0 and args.top_p == 1.0 and not args.bf16 and args.use_cpu
    assert not args.gradient_checkpointing and args.max_steps == 2
    assert grpo_config_kwargs(SPEC, "x")["shuffle_dataset"] is False


def test_fastdapo_config_matches_shape():
    from fastdapo.config import load_config

    cfg = load_config(None, fastdapo_overrides(SPEC, "runs/x"))
    a, r = cfg.algorithm, cfg.rollout
    assert a.train_batch_size == a.mini_batch_size == a.gen_batch_size == 3 and a.ppo_epochs == 1
    assert not a.dynamic_sampling and not a.overlong_shaping
    assert r.n == 2 and r.max_response_length == 4 and r.temperature == 1.0 and r.top_p == 1.0
    assert cfg.run.steps == 2 and cfg.run.save_every == 0 and not cfg.run.progress and not cfg.data.shuffle


def test_summary_skips_warmup_step():
    steps = [
        {"time/step": 9.0, "time/rollout": 5.0, "tokens": 10, "response_length/mean": 2.0},
        {"time/step": 1.0, "time/rollout": 0.5, "tokens": 10, "response_length/mean": 2.0},
        {"time/step": 3.0, "time/rollout": 0.5, "tokens": 10, "response_length/mean": 2.0},
    ]
    row = summarize({"framework": "trl", "steps": steps, "threads": 1}, SPEC)
    assert row["steps_timed"] == 2 and row["median_step_s"] == 2.0 and row["tokens_per_s"] == 5.0


@pytest.fixture
def tiny_model_dir(tmp_path):
    from fastdapo.toy.model import tiny_qwen2
    from fastdapo.toy.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    tiny_qwen2(len(tok), hidden=32, layers=1, heads=2).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_e2e_two_step_comparison(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "results"
    res = CliRunner().invoke(
        e2e_command,
        [
            "--prompts",
            "2",
            "--group-size",
            "2",
            "--max-new-tokens",
            "4",
            "--steps",
            "2",
            "--threads",
            "1",
            "--eval-size",
            "4",
            "--model-dir",
            str(tiny_model_dir),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = {r["framework"]: r for r in csv.DictReader((out / "e2e.csv").open())}
    assert set(rows) == {"fastdapo", "trl"}
    for r in rows.values():
        assert r["steps_run"] == "2" and r["steps_timed"] == "1" and r["threads"] == "1"
        assert float(r["median_step_s"]) > 0 and float(r["tokens_per_step"]) > 0
    assert float(rows["trl"]["speedup_vs_trl"]) == 1.0 and float(rows["fastdapo"]["speedup_vs_trl"]) > 0
    assert (out / "e2e.md").read_text().startswith("# e2e DAPO step time")
