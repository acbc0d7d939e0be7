"""Smoke test of the end-to-end benchmark: config builders for both sides, then a 2-step run of
each framework (1 warm-up + 1 timed step) on a tiny random Qwen2 through the click command, fastdapo
both synchronous and with asynchronous rollouts (max_staleness 1, 1 generator + 1 trainer thread)."""

import csv
import math
import os
from unittest import mock

import click
import pytest
from click.testing import CliRunner

from fastdapo_bench.e2e import e2e_command, parse_variants, summarize
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


@pytest.fixture
def environ_restored():
    """TrainingArguments starts accelerate's state, which writes MASTER_ADDR/MASTER_PORT (29500) into this
    process's environment: every later run the suite starts would inherit that fixed port."""
    with mock.patch.dict(os.environ):
        yield


def test_trl_config_matches_shape(tmp_path, environ_restored):
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


def test_variants_parse():
    assert parse_variants("sync") == [0] and parse_variants("sync, async1") == [0, 1]
    assert parse_variants("async2") == [2]
    for bad in ("async0", "async", "fast", "sync,sync", ""):
        with pytest.raises(click.BadParameter):
            parse_variants(bad)


def test_async_config_from_spec():
    from fastdapo.config import load_config

    spec = {**SPEC, "extra_sets": ["rollout.max_staleness=1", "rollout.generator_threads=1"]}
    cfg = load_config(None, fastdapo_overrides(spec, "runs/x"))
    assert cfg.rollout.max_staleness == 1 and cfg.rollout.generator_threads == 1
    assert not cfg.algorithm.dynamic_sampling


def test_summary_overlap():
    # sync: the actor's work follows generation -> overlap 0; async: 0.5 s of generation hidden behind 1 s of work
    base = {"tokens": 1, "response_length/mean": 2.0}
    sync = [{"time/step": 2.0, "time/rollout": 1.0, "gen_s": 1.0, "actor_s": 1.0, **base}] * 2
    row = summarize({"framework": "fastdapo", "steps": sync, "threads": 2, "max_staleness": 0}, SPEC)
    assert row["overlap_eff"] == 0.0 and row["step_over_bound"] == 2.0 and row["max_staleness"] == 0
    step = {"time/step": 1.2, "time/rollout": 0.2, "gen_s": 0.7, "actor_s": 1.0, **base}
    step |= {"async/staleness_mean": 1.0, "async/dropped_stale": 0, "async/actor_wait_s": 0.2}
    res = {"framework": "fastdapo-async1", "steps": [step] * 2, "threads": 2, "max_staleness": 1}
    row = summarize({**res, "trainer_threads": 1, "generator_threads": 1}, SPEC)
    assert row["overlap_eff"] == pytest.approx(0.5 / 0.7, abs=1e-3) and row["step_over_bound"] == 1.2
    assert row["median_actor_wait_s"] == 0.2 and row["dropped_stale"] == 0 and row["generator_threads"] == 1


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
            "2",
            "--fastdapo-variants",
            "sync,async1",
            "--generator-threads",
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
    assert set(rows) == {"fastdapo", "fastdapo-async1", "trl"}
    for r in rows.values():
        assert r["steps_run"] == "2" and r["steps_timed"] == "1" and r["threads"] == "2"
        assert float(r["median_step_s"]) > 0 and float(r["tokens_per_step"]) > 0
    sync, asyn, trl = rows["fastdapo"], rows["fastdapo-async1"], rows["trl"]
    assert float(trl["speedup_vs_trl"]) == 1.0 and float(sync["speedup_vs_sync"]) == 1.0
    assert asyn["max_staleness"] == "1" and (asyn["trainer_threads"], asyn["generator_threads"]) == ("1", "1")
    assert sync["max_staleness"] == "0" and sync["generator_threads"] == ""
    for r in (sync, asyn):
        for key in (
            "speedup_vs_trl",
            "speedup_vs_sync",
            "mean_gen_s",
            "mean_actor_s",
            "overlap_eff",
            "step_over_bound",
        ):
            assert math.isfinite(float(r[key])), (r["framework"], key)
        assert float(r["mean_gen_s"]) > 0 and float(r["mean_actor_s"]) > 0
    assert float(sync["overlap_eff"]) == pytest.approx(0.0, abs=1e-3)  # synchronous: nothing overlaps
    assert float(asyn["median_staleness_mean"]) == 1.0 and asyn["dropped_stale"] == "0"
    assert trl["overlap_eff"] == "" and float(trl["speedup_vs_sync"]) > 0
    md = (out / "e2e.md").read_text()
    assert md.startswith("# e2e DAPO step time") and "| fastdapo-async1 |" in md
    steps = list(csv.DictReader((out / "e2e_steps.csv").open()))
    assert {r["framework"] for r in steps} == set(rows)
    assert all(float(r["async_generate_s"]) > 0 for r in steps if r["framework"] == "fastdapo-async1")
