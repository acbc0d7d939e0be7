"""`fastdapo eval` end to end: tiny random Qwen2 + in-process tokenizer, real AIME fixture."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastdapo.evaluation.cli import eval_command, load_model_for_eval
from fastdapo.toy.tokenizer import build_char_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _invoke(args):
    result = CliRunner().invoke(eval_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_eval_end_to_end(model_dir, tmp_path):
    out = tmp_path / "aime.jsonl"
    res = _invoke(
        [
            "--model",
            str(model_dir),
            "--data",
            str(FIXTURES / "aime-2024.parquet"),
            "--n",
            "2",
            "--max-new-tokens",
            "6",
            "--max-prompt-length",
            "4096",
            "--batch-size",
            "4",
            "--limit",
            "3",
            "--out",
            str(out),
            "--json",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    summary = json.loads(res.stdout)
    assert summary["num_problems"] == 3 and summary["k"] == 2 and summary["num_samples"] == 6
    assert summary["reward"] == "dapo"  # the training default
    assert {"avg@2", "pass@1", "pass@2", "maj@2"} <= set(summary)
    assert summary["pass_k"] == [1, 2]  # the default: 1 and n
    assert summary["avg@2"] == summary["pass@1"] == 0.0  # a random model does not solve AIME
    assert 0 < summary["response_length/mean"] <= 6
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["ground_truth"] for r in rows] == ["204", "113", "371"]
    assert all(len(r["accs"]) == 2 and len(r["lengths"]) == 2 for r in rows)


def test_eval_table_output_and_default_out(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _invoke(
        [
            "--model",
            str(model_dir),
            "--data",
            str(FIXTURES / "amc-2023.jsonl"),
            "--n",
            "2",
            "--pass-k",
            "2",
            "--max-new-tokens",
            "4",
            "--max-prompt-length",
            "4096",
            "--limit",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert "avg@2" in res.stdout and "pass@2" in res.stdout and "pass@1" not in res.stdout
    assert "unbiased" in res.stdout  # the table says which pass@k it reports
    assert (tmp_path / "eval-amc-2023.jsonl").exists()


def test_eval_reports_bad_model_dir(tmp_path):
    result = CliRunner().invoke(eval_command, ["--model", str(tmp_path), "--data", str(FIXTURES / "aime-2024.jsonl")])
    assert result.exit_code != 0 and "no config.json" in result.output


def test_eval_reports_malformed_data(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?"}\n')
    result = CliRunner().invoke(eval_command, ["--model", str(model_dir), "--data", str(bad), "--device", "cpu"])
    assert result.exit_code != 0 and "row 1" in result.output and "'answer'" in result.output


def test_load_model_for_eval_sets_left_padding(model_dir):
    model, tok = load_model_for_eval(model_dir, device="cpu")
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training


def test_eval_attached_to_cli():
    import click

    from fastdapo.cli import main

    ctx = click.Context(main)
    assert "eval" in main.list_commands(ctx) and main.get_command(ctx, "eval") is eval_command


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--temperature", "-0.5", "--temperature"),
        ("--temperature", "0", "--temperature"),
        ("--top-p", "0", "--top-p"),
        ("--top-p", "1.5", "--top-p"),
        ("--reward-timeout", "0", "--reward-timeout"),
        ("--device", "gpu", "not one of auto, cpu, cuda"),
        ("--pass-k", "1,x", "comma-separated list of integers"),
        ("--pass-k", "0,2", "each k must be >= 1"),
    ],
)
def test_eval_options_are_validated_like_the_config(model_dir, option, value, expected):
    result = CliRunner().invoke(
        eval_command, ["--model", str(model_dir), "--data", str(FIXTURES / "amc-2023.jsonl"), option, value]
    )
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_boxed_fallback_with_another_reward_is_one_line(model_dir):
    args = ["--model", str(model_dir), "--data", str(FIXTURES / "amc-2023.jsonl"), "--reward", "math_verify"]
    result = CliRunner().invoke(eval_command, [*args, "--reward-boxed-fallback"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--reward-boxed-fallback applies to --reward dapo only, not math_verify" in result.output


def test_tokenizer_without_eos_and_pad_is_one_line(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "no-eos"
    shutil.copytree(model_dir, broken)
    cfg_file = broken / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_file.read_text())
    tok_cfg.update(eos_token=None, pad_token=None)
    cfg_file.write_text(json.dumps(tok_cfg))
    (broken / "special_tokens_map.json").unlink(missing_ok=True)
    result = CliRunner().invoke(
        eval_command, ["--model", str(broken), "--data", str(FIXTURES / "amc-2023.jsonl"), "--device", "cpu"]
    )
    assert result.exit_code == 1 and "neither an EOS nor a pad token" in result.output, result.output
    assert result.output.count("\n") == 1 and str(broken) in result.output


def test_tokenizer_without_eos_warns_with_the_consequence(model_dir, tmp_path, caplog):
    import logging
    import shutil

    from fastdapo.models import load_tokenizer

    broken = tmp_path / "no-eos"
    shutil.copytree(model_dir, broken)
    cfg_file = broken / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_file.read_text())
    tok_cfg.update(eos_token=None)
    cfg_file.write_text(json.dumps(tok_cfg))
    (broken / "special_tokens_map.json").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="fastdapo"):
        tok = load_tokenizer(broken)
    assert tok.eos_token_id is None and tok.pad_token_id is not None
    assert "no EOS token" in caplog.text and "truncated" in caplog.text


def _eval_args(model_dir, *extra):
    data = str(FIXTURES / "amc-2023.jsonl")
    return ["--model", str(model_dir), "--data", data, "--n", "1", "--max-new-tokens", "2", "--limit", "1", *extra]


def test_eval_never_replaces_an_existing_default_results_file(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval-amc-2023.jsonl").write_text("earlier results\n")
    first = _invoke(_eval_args(model_dir, "--device", "cpu", "--json"))
    second = _invoke(_eval_args(model_dir, "--device", "cpu", "--json"))
    assert (tmp_path / "eval-amc-2023.jsonl").read_text() == "earlier results\n"
    assert json.loads(first.stdout)["out"] == "eval-amc-2023-2.jsonl"
    assert json.loads(second.stdout)["out"] == "eval-amc-2023-3.jsonl"
    assert "eval-amc-2023.jsonl exists (kept); writing the results to eval-amc-2023-2.jsonl" in first.stderr
    assert (tmp_path / "eval-amc-2023-2.jsonl").read_text().count("\n") == 1


def test_eval_out_to_an_existing_file_needs_overwrite(model_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text("earlier results\n")
    refused = CliRunner().invoke(eval_command, _eval_args(model_dir, "--out", str(out)))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.output.strip().splitlines()[-1] == f"Error: --out {out} already exists; --overwrite replaces it"
    assert out.read_text() == "earlier results\n"
    _invoke(_eval_args(model_dir, "--out", str(out), "--overwrite", "--device", "cpu"))
    assert out.read_text() != "earlier results\n"


def test_pass_k_above_n_is_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # tmp_path is no model: the k check must come first, before the model or the results file
    args = ["--model", str(tmp_path), "--data", str(FIXTURES / "amc-2023.jsonl"), "--n", "4", "--pass-k", "1,8"]
    result = CliRunner().invoke(eval_command, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == ("Error: --pass-k 8 exceeds --n 4: pass@k needs at least k samples per problem (k <= n)\n")
    assert not list(tmp_path.glob("eval-*.jsonl"))


def test_help_states_pass_k_and_its_default():
    result = CliRunner().invoke(eval_command, ["--help"])
    text = " ".join(result.output.split())
    assert "--pass-k" in text and "Default: 1 and n" in text and "1 - C(n-c,k)/C(n,k)" in text
