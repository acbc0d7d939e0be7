"""`fastdapo bench ablation --quick` end to end: the whole ladder (6 rungs x 1 seed) through real `fastdapo train`
processes, writing one CSV row per rung and seed, the per-step CSV, the markdown and the plot.

The base config is pinned to configs/toy.yaml (the arithmetic toy task) so that the test's time does not depend on
the default long-reasoning config; ~1.5-2.5 minutes on 2 shared cores, the tiny warm start built on first use."""

import csv

import yaml
from click.testing import CliRunner

from fastdapo.cli import main
from fastdapo_bench.ablation_rungs import RUNGS


def test_quick_ladder_end_to_end(tmp_path):
    out, work = tmp_path / "results", tmp_path / "runs"
    args = [
        "bench",
        "ablation",
        "--quick",
        "--config",
        "configs/toy.yaml",
        "--out-dir",
        str(out),
        "--work-dir",
        str(work),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "[6/6] dynamic-sampling seed 0: done" in result.output and "FAILED" not in result.output

    with (out / "ablation.csv").open() as f:
        runs = list(csv.DictReader(f))
    assert [(r["rung"], r["seed"]) for r in runs] == [(rung.name, "0") for rung in RUNGS]
    for r, rung in zip(runs, RUNGS):
        assert r["status"] == "ok" and r["steps"] == "2" and float(r["wall_s"]) > 0, r
        assert 0.0 <= float(r["acc_final"]) <= 1.0 and r["acc_step0"] != ""
        cfg = yaml.safe_load((work / rung.name / "seed0" / "config.yaml").read_text())
        a = cfg["algorithm"]
        assert {f"algorithm.{k}": a[k] for k in (key.split(".")[1] for key in rung.settings)} == rung.settings
        assert (
            a["dual_clip"] is None and cfg["run"]["seed"] == 0
        )  # configs/toy.yaml's, on every rung and cfg["toy"]["hidden_size"] == 32
        # samples consumed: rounds x prompts per round x rollout.n, the rounds read from the per-step rows
        per_round = (a["gen_batch_size"] if a["dynamic_sampling"] else a["train_batch_size"]) * cfg["rollout"]["n"]
        with (out / "ablation_steps.csv").open() as f:
            mine = [s for s in csv.DictReader(f) if s["rung"] == rung.name]
        assert [s["step"] for s in mine] == ["0", "1", "2"]
        rounds = sum(int(s["filter/gen_batches"]) for s in mine if s["step"] != "0")
        assert int(r["samples"]) == rounds * per_round == int(mine[-1]["samples_cum"])
    assert int(runs[0]["samples"]) == 2 * 4 * 4  # naive GRPO: 2 steps x 4 prompts x 4 responses

    md = (out / "ablation.md").read_text()
    assert "Machine:" in md and "torch" in md and "fastdapo commit" in md and "Command: `fastdapo bench ablation" in md
    assert all(f"| {rung.title} |" in md for rung in RUNGS)
    assert (out / "ablation.png").stat().st_size > 10_000
    first_line = (work / "logs" / "naive-grpo-seed0.log").read_text().splitlines()[0]
    assert "-m fastdapo.cli train configs/toy.yaml" in first_line  # each log starts with its exact command
