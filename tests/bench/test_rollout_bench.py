"""Smoke test of the rollout benchmark: the engines' rows count the tokens they actually generated."""

from click.testing import CliRunner

from fastdapo_bench.rollout import MODELS, rollout_command


def test_rollout_bench_rows(tmp_path):
    res = CliRunner().invoke(
        rollout_command,
        [
            "--models",
            "3M",
            "--engines",
            "torch,hf",
            "--prompts",
            "2",
            "--n",
            "2",
            "--max-new-tokens",
            "5",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "rollout.csv").read_text().splitlines()
    assert lines[0].startswith("model,params_m,engine,sequences,tokens")
    rows = [ln.split(",") for ln in lines[1:]]
    assert [r[2] for r in rows] == ["torch", "hf"]
    for r in rows:
        assert int(r[3]) == 4 and 4 <= int(r[4]) <= 20 and float(r[6]) > 0
    assert 2.0 < float(rows[0][1]) < 4.0  # "3M" is about 3M parameters
    assert "| 3M |" in (tmp_path / "rollout.md").read_text() and "30M" in MODELS


def test_unknown_model_is_one_line(tmp_path):
    res = CliRunner().invoke(rollout_command, ["--models", "huge", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown model 'huge'" in res.output
