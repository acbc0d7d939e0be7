"""The one-command GPU check: its CPU twin end to end (part (c) runs `fastdapo train`), and that every failing
verdict, a part that errs and a part the budget cuts make it exit non-zero."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastdapo_bench import gpu_check_train
from fastdapo_bench.gpu_check import main
from fastdapo_bench.gpu_check_bench import record_verdicts
from fastdapo_bench.gpu_check_common import PartResult
from fastdapo_bench.gpu_check_train_plan import plan_train
from fastdapo_bench.gpu_check_train_verdicts import read_steps, run_verdicts

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", **extra)
    env.pop("TRITON_INTERPRET", None)  # the script must set it itself
    return env


def _check(out, *args, timeout=300):
    return subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--cpu", "--out", str(out), *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cpu_twin_runs_every_part_and_fastdapo_train(tmp_path):
    proc = _check(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    report = (tmp_path / "report.md").read_text()
    for title in (
        "(a) kernels vs float64 reference: pass",
        "(b) kernel benchmark: pass",
        "(c) fastdapo train: pass",
        "(d) kernel tests (pytest tests/kernels, compiled): skipped",
    ):
        assert title in report, report[-3000:]
    # part (b): the four verdicts are shown, and said not to be enforced at the twin's tiny shape
    for verdict in ("faster than Liger", "no slower than naive", "extra memory <= 2% of naive", "TFLOP/s >= 60%"):
        assert verdict in report and verdict in out
    assert "not enforced" in out
    # part (c) ran the product: its command line is reported and its run directory holds the two steps
    assert "-m fastdapo.cli train --set run.output_dir=" in report and "fastdapo.cli train" in out
    rows, why = read_steps(tmp_path / "train-run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2], why
    assert all("loss" in r and "grad_norm" in r for r in rows)
    assert json.loads((tmp_path / "train-run" / "metrics.jsonl").read_text().splitlines()[0])["step"] == 0  # eval
    csv_rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    status = {r["part"]: r["value"] for r in csv_rows if r["metric"] == "status"}
    assert status == {"a": "pass", "b": "pass", "c": "pass", "d": "skipped"}
    train_verdicts = [r for r in csv_rows if r["part"] == "c" and r["metric"] == "verdict"]
    assert len(train_verdicts) == 5 and all(r["ok"] == "True" for r in train_verdicts)
    assert "GPU check: passed" in out


def test_a_run_that_learns_nothing_fails_the_check(tmp_path):
    """Forced failure: a toy model with no warm start gets every answer wrong, so no group survives dynamic
    sampling and no update is applied.  `fastdapo train` exits 0; the check must not."""
    proc = _check(tmp_path, "--parts", "c", "--train-set", "toy.sft_steps=0")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    report = (tmp_path / "report.md").read_text()
    assert "(c) fastdapo train: fail" in report
    assert "**PASS** exit code 0" in report  # the product itself reported success
    assert "**FAIL** some loss or grad non-zero" in report and "nothing was learned" in out
    assert "--set toy.sft_steps=0" in report  # the caller's override is part of what ran
    assert "GPU check: FAILED, part(s) c" in out


def test_failing_part_is_reported_and_the_rest_still_run(tmp_path):
    """A part that raises is recorded with its error; later parts still run and the exit code is 1."""
    code = (
        "import sys, fastdapo_bench.gpu_check_kernels as k\n"
        "def boom(*a, **kw): raise ValueError('injected failure')\n"
        "k.run_kernel_check = boom\n"
        "from fastdapo_bench.gpu_check import main\n"
        f"sys.exit(main(['--cpu', '--parts', 'ad', '--out', {str(tmp_path)!r}]))\n"
    )
    env = _env(TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "bench")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    report = (tmp_path / "report.md").read_text()
    assert "(a) kernels vs float64 reference: error" in report and "injected failure" in report
    assert "(d) kernel tests (pytest tests/kernels, compiled): skipped" in report


def test_a_part_cut_by_the_budget_fails_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(["--cpu", "--parts", "a", "--budget-s", "0", "--out", str(tmp_path)]) == 1
    assert "not started" in (tmp_path / "report.md").read_text()


ACCEPTANCE = [
    ("no slower than naive", "FAIL", "ours 9 ms vs naive 5 ms"),
    (">= 2x faster than Liger chunked GRPO", "UNSETTLED", "no step measurement for liger"),
    ("extra memory <= 2% of naive", "PASS", "ours 1 MiB vs naive 900 MiB"),
]


def test_a_failing_acceptance_verdict_fails_the_benchmark_part_on_the_gpu():
    gpu = PartResult("b")
    record_verdicts(gpu, ACCEPTANCE, enforce=True)
    assert gpu.status == "fail"
    assert {r["item"]: r["ok"] for r in gpu.rows} == {  # UNSETTLED is reported but decides nothing
        "verdict: no slower than naive": "False",
        "verdict: >= 2x faster than Liger chunked GRPO": "",
        "verdict: extra memory <= 2% of naive": "True",
    }
    twin = PartResult("b")
    record_verdicts(twin, ACCEPTANCE, enforce=False)
    assert twin.status == "pass" and all("not enforced" in s for s in twin.summary)
    unsettled_only = PartResult("b")
    record_verdicts(unsettled_only, ACCEPTANCE[1:], enforce=True)
    assert unsettled_only.status == "pass"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_steps(path)


def _failing(verdicts):
    return {v.name for v in verdicts if not v.ok}


def test_train_verdicts_from_the_run_alone(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    good = [{"step": 0, "eval/acc": 0.1}] + [
        {"step": s, "loss": 0.2, "grad_norm": 0.5, "train/updates": 2, "train/skipped_updates": 0} for s in (1, 2)
    ]
    assert _failing(run_verdicts(0, 3.0, *_write(metrics, good), steps=2)) == set()
    assert _failing(run_verdicts(1, 3.0, *_write(metrics, good), steps=2)) == {"exit code 0"}
    assert _failing(run_verdicts(0, 3.0, *_write(metrics, good[:2]), steps=2)) == {"metrics.jsonl has steps 1..2"}
    nan = [dict(r, loss=float("nan")) if r["step"] == 2 else r for r in good]
    assert _failing(run_verdicts(0, 3.0, *_write(metrics, nan), steps=2)) == {"loss and grad_norm finite at every step"}
    skipped = [dict(r, **{"train/skipped_updates": 1}) if r["step"] == 1 else r for r in good]
    assert _failing(run_verdicts(0, 3.0, *_write(metrics, skipped), steps=2)) == {"no update skipped"}
    still = [dict(r, loss=0.0, grad_norm=0.0) if r["step"] else r for r in good]
    assert _failing(run_verdicts(0, 3.0, *_write(metrics, still), steps=2)) == {"some loss or grad non-zero"}
    timed_out = run_verdicts(None, 90.0, *_write(metrics, good), steps=2)
    assert "time budget" in timed_out[0].detail and not timed_out[0].ok
    metrics.unlink()
    nothing = run_verdicts(0, 1.0, *read_steps(metrics), steps=2)
    assert len(_failing(nothing)) == 4 and "no " in nothing[1].detail  # only the exit code passes
    _write(metrics, good)  # left by an earlier run: not read as this one's
    assert read_steps(metrics, since=metrics.stat().st_mtime + 60) == ([], f"{metrics} was not written by this run")


def test_cuda_plan_uses_every_fast_path_that_imports(tmp_path):
    plan = plan_train(cuda=True, gpus=2, out=tmp_path, has=lambda m: True, python="python3")
    s = plan.settings
    assert s["run.device"] == "cuda" and s["model.dtype"] == "bfloat16" and s["distributed.zero_stage"] == "2"
    assert s["model.attn_implementation"] == "flash_attention_2" and s["rollout.engine"] == "vllm"
    assert s["model.use_liger"] == "on"
    assert s["algorithm.kernel_impl"] == "triton" and s["run.output_dir"] == str(tmp_path / "train-run")
    assert plan.notes == []
    single, launch, launch_sp = plan.runs
    assert single.command[:4] == ["python3", "-m", "fastdapo.cli", "train"] and single.steps == 3
    assert launch.command[3:6] == ["launch", "--num-procs", "2"]
    assert "distributed.zero_stage=3" in launch.command and launch.run_dir == tmp_path / "train-run-launch"
    assert launch_sp.command[3:6] == ["launch", "--num-procs", "2"]
    assert "distributed.sequence_parallel_size=2" in launch_sp.command
    assert launch_sp.run_dir == tmp_path / "train-run-launch-sp"


def test_cuda_plan_says_what_it_left_out_and_why(tmp_path):
    plan = plan_train(cuda=True, gpus=1, out=tmp_path, has=lambda m: False, extra=["run.steps=4"])
    s = plan.settings
    assert s["model.attn_implementation"] == "packed_sdpa" and s["model.use_liger"] == "off"
    assert s["rollout.engine"] == "torch"
    assert [r.name for r in plan.runs] == ["train"] and plan.runs[0].steps == 4  # the caller's override wins
    assert plan.runs[0].command[-2:] == ["--set", "run.steps=4"]
    notes = " | ".join(plan.notes)
    for why in (
        "flash-attn not importable: packed SDPA used",
        "liger-kernel not importable",
        "vllm not importable",
        "1 CUDA device visible",
    ):
        assert why in notes


def test_train_part_fails_without_starting_when_deepspeed_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check_train, "has_module", lambda m: m != "deepspeed")
    result = PartResult("c")
    gpu_check_train.run_train_check(result, None, None, True, tmp_path)
    assert result.status == "fail" and "deepspeed" in result.summary[0]
    assert not (tmp_path / "train.log").exists()


def test_train_set_needs_key_and_value(tmp_path):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        plan_train(cuda=False, gpus=0, out=tmp_path, extra=["run.steps"])
