"""`fastdapo bench ablation` aggregation on hand-written run directories: final numbers, samples consumed, the
t-interval over seeds, the CSV/markdown/plot files, and the runner's one-line report of a failed run."""

import csv
import json
import math
import sys

import pytest
import yaml

from fastdapo_bench.ablation import collect
from fastdapo_bench.ablation_aggregate import read_run, run_summary, rung_summary, step_rows, t_interval
from fastdapo_bench.ablation_plan import RunSpec
from fastdapo_bench.ablation_plot import plot_ladder, seed_mean
from fastdapo_bench.ablation_report import markdown, write_csv
from fastdapo_bench.ablation_rungs import RUNGS
from fastdapo_bench.ablation_runner import RunOutcome, run_all


def _run_dir(path, rows, dynamic_sampling, train=4, gen=6, n=3):
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"algorithm": {"dynamic_sampling": dynamic_sampling, "train_batch_size": train, "gen_batch_size": gen,
                         "dual_clip": None},
           "rollout": {"n": n}}  # fmt: skip
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def _step(step, gen_batches, **kw):
    means = {"acc/mean": 0.5, "entropy/mean": 0.1 * step, "response_length/mean": 10.0 + step}
    return {"step": step, "filter/gen_batches": gen_batches, **means, "clip_frac/high": 0.01 * step,
            "clip_frac/low": 0.001, **kw}  # fmt: skip


def test_t_interval():
    mean, low, high = t_interval([0.5, 0.6, 0.7])
    half = 4.303 * 0.1 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 0.1
    assert mean == pytest.approx(0.6) and low == pytest.approx(0.6 - half) and high == pytest.approx(0.6 + half)
    assert t_interval([0.4]) == (0.4, None, None)  # one seed: no interval
    assert t_interval([]) == (None, None, None)
    m, lo, hi = t_interval([1.0] * 40 + [0.0] * 40)  # beyond the table: Cornish-Fisher, ~2.0 for df 79
    assert (hi - m) == pytest.approx(1.990 * math.sqrt(80 / 79 * 0.25) / math.sqrt(80), rel=2e-3)


def test_run_summary_and_samples_consumed(tmp_path):
    # dynamic sampling on: rounds of gen_batch_size=6 prompts x n=3 responses; 2 + 1 + 3 rounds
    rows = [{"step": 0, "eval/acc": 0.25}, _step(1, 2), _step(2, 1), _step(3, 3, **{"eval/acc": 0.75})]
    ds = read_run(_run_dir(tmp_path / "ds", rows, True))
    s = run_summary(ds)
    assert s["samples"] == (2 + 1 + 3) * 6 * 3 == 108
    assert s["steps"] == 3 and s["acc_step0"] == 0.25 and s["acc_final"] == 0.75
    assert s["entropy_final"] == pytest.approx(0.3) and s["length_final"] == 13.0
    assert s["clip_frac_high_mean"] == pytest.approx(0.02) and s["clip_frac_low_mean"] == pytest.approx(0.001)
    assert s["clip_frac_dual_mean"] is None  # not logged by this run
    # dynamic sampling off: one round of train_batch_size=4 prompts per step, gen_batch_size ignored
    plain_rows = [rows[0], _step(1, 1), _step(2, 1), _step(3, 1, **{"eval/acc": 0.5})]
    plain = read_run(_run_dir(tmp_path / "plain", plain_rows, False))
    assert run_summary(plain)["samples"] == 3 * 4 * 3 == 36
    steps = step_rows("x", 1, ds)
    assert [r["step"] for r in steps] == [0, 1, 2, 3]
    assert [r["samples"] for r in steps] == [0, 36, 18, 54] and [r["samples_cum"] for r in steps] == [0, 36, 54, 108]
    assert steps[3]["eval/acc"] == 0.75 and steps[0]["entropy/mean"] is None


def test_repeated_step_lines_keep_the_newest(tmp_path):
    rows = [{"step": 0, "eval/acc": 0.1}, _step(1, 5), _step(1, 1), _step(2, 1, **{"eval/acc": 0.2})]
    assert run_summary(read_run(_run_dir(tmp_path / "r", rows, True)))["samples"] == 2 * 6 * 3


def test_collect_report_and_plot(tmp_path):
    naive, dapo = RUNGS[0], RUNGS[-1]
    outcomes = []
    for seed, final in enumerate([0.5, 0.6, 0.7]):
        rows = [{"step": 0, "eval/acc": 0.1}, _step(1, 1), _step(2, 1, **{"eval/acc": final})]
        d = _run_dir(tmp_path / "dapo" / f"seed{seed}", rows, True)
        outcomes.append(RunOutcome(RunSpec(dapo, seed, d, tmp_path / f"d{seed}.log", ["x"]), 0, 10.0 + seed))
    rows = [{"step": 0, "eval/acc": 0.1}, _step(1, 1), _step(2, 1, **{"eval/acc": 0.3})]
    outcomes.append(
        RunOutcome(RunSpec(naive, 0, _run_dir(tmp_path / "n0", rows, False), tmp_path / "n0.log", []), 0, 5)
    )
    outcomes.append(RunOutcome(RunSpec(naive, 1, tmp_path / "n1", tmp_path / "n1.log", []), 1, 2.0, "Error: boom"))
    outcomes.append(RunOutcome(RunSpec(naive, 2, tmp_path / "missing", tmp_path / "n2.log", []), 0, 2.0))
    runs, steps = collect(outcomes)
    assert [r["status"] for r in runs] == ["ok"] * 4 + ["failed"] * 2
    assert runs[4]["error"] == "Error: boom" and runs[5]["error"].startswith("unreadable metrics")
    s = rung_summary([r for r in runs if r["rung"] == "dynamic-sampling"])
    assert s["seeds_ok"] == 3 and s["acc_mean"] == pytest.approx(0.6) and s["samples"] == 2 * 6 * 3
    assert s["acc_gain_mean"] == pytest.approx(0.5) and s["wall_s"] == pytest.approx(11.0)
    assert len(steps) == 4 * 3 and seed_mean(steps, "dynamic-sampling", "eval/acc") == (
        [0, 2],
        pytest.approx([0.1, 0.6]),
    )

    write_csv(tmp_path / "ablation.csv", runs)
    with (tmp_path / "ablation.csv").open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == 6 and "error" in read[0] and read[4]["error"] == "Error: boom"
    info = {"cpu": "cpu", "cores": 2, "python": "3", "torch": "t", "transformers": "x", "deepspeed": "d",
            "fastdapo_commit": "abc"}  # fmt: skip
    md = markdown(runs, ["naive-grpo", "dynamic-sampling"], info, "fastdapo bench ablation --quick", "c.yaml")
    lines = md.splitlines()
    assert lines[0].startswith("# DAPO ablation") and "Machine: cpu, 2 cores" in md and "fastdapo commit abc." in md
    assert "Command: `fastdapo bench ablation --quick`" in md
    assert md.index("Machine:") < md.index("Command:") < md.index("| rung |")  # machine, versions, command on top
    naive_row = next(line for line in lines if line.startswith("| Naive GRPO |"))
    assert (
        "| 1 (2 failed) |" in naive_row and "0.300 (one seed: no interval)" in naive_row and "| 24 |" in naive_row
    )  # 2 steps x 4 prompts x 3
    dapo_row = next(line for line in lines if line.startswith("| + Dynamic Sampling (DAPO) |"))
    half = 4.303 * 0.1 / math.sqrt(3)
    assert f"0.600 ± {half:.3f} [{0.6 - half:.3f}, {0.6 + half:.3f}]" in dapo_row
    assert "Failed runs: naive-grpo seed 1" in md and "dual clip (`algorithm.dual_clip`, not a rung setting): off" in md
    png = plot_ladder(steps, ["naive-grpo", "dynamic-sampling"], tmp_path / "ablation.png")
    assert png.stat().st_size > 10_000


def test_runner_reports_a_failed_run_in_one_line_and_goes_on(tmp_path):
    fail = [sys.executable, "-c", "import sys; print('working'); print('Error: bad things'); sys.exit(3)"]
    ok = [sys.executable, "-c", "print('fine')"]
    specs = [RunSpec(RUNGS[0], 0, tmp_path / "a", tmp_path / "logs" / "a.log", fail),
             RunSpec(RUNGS[1], 0, tmp_path / "b", tmp_path / "logs" / "b.log", ok)]  # fmt: skip
    lines = []
    outcomes, interrupted = run_all(specs, {}, echo=lines.append)
    assert not interrupted and [o.returncode for o in outcomes] == [3, 0]
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1
    assert "naive-grpo seed 0 (exit 3)" in failed[0] and "Error: bad things" in failed[0]
    assert str(tmp_path / "logs" / "a.log") in failed[0] and "going on" in failed[0]
    assert any(line.startswith("[2/2] overlong-filtering seed 0: done") for line in lines)
    assert "Error: bad things" in (tmp_path / "logs" / "a.log").read_text()


def test_a_step_that_kept_no_group_measured_no_entropy_or_clipping(tmp_path):
    empty = {"filter/kept_groups": 0, "entropy/mean": 0.0, "clip_frac/high": 0.0, "clip_frac/low": 0.0}
    rows = [{"step": 0, "eval/acc": 0.1}, _step(1, 1, **{"filter/kept_groups": 2}), _step(2, 3, **empty)]
    run = read_run(_run_dir(tmp_path / "r", rows, True))
    s = run_summary(run)
    assert s["entropy_final"] == pytest.approx(0.1) and s["length_final"] == 12.0  # step 1's entropy, step 2's length
    assert s["clip_frac_high_mean"] == pytest.approx(0.01) and s["samples"] == (1 + 3) * 6 * 3
    assert step_rows("r", 0, run)[2]["entropy/mean"] is None
