"""The CPU twin of the one-command GPU check runs every part end to end (Triton interpreter)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_twin_runs_every_part(tmp_path):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)  # the script must set it itself
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--cpu", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    report = (tmp_path / "report.md").read_text()
    for title in ("(a) kernels vs float64 reference: pass", "(b) kernel benchmark: pass", "(c) toy DAPO steps: pass"):
        assert title in report, report[-3000:]
    for verdict in (
        "faster than Liger",
        "no slower than naive",
        "extra memory <= 2% of naive",
        "TFLOP/s >= 60% of matmul",
    ):
        assert verdict in report and verdict in out
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    status = {r["part"]: r["value"] for r in rows if r["metric"] == "status"}
    assert status == {"a": "pass", "b": "pass", "c": "pass"}
    # the kernel part compared both dtypes, the benchmark timed ours, the toy step checked on-policy
    assert any(r["item"].startswith("bfloat16 base") and r["metric"] == "dW_rel" for r in rows)
    assert any(r["item"] == "triton step" and r["metric"] == "time_ms" for r in rows)
    assert any(r["metric"] == "on_policy_logprobs" and r["ok"] == "True" for r in rows)


def test_failing_part_is_reported_and_the_rest_still_run(tmp_path):
    """A part that raises is recorded with its error; later parts run and the exit code is 1."""
    code = (
        "import sys, fastdapo_bench.gpu_check_kernels as k\n"
        "def boom(*a, **kw): raise ValueError('injected failure')\n"
        "k.run_kernel_check = boom\n"
        "from fastdapo_bench.gpu_check import main\n"
        f"sys.exit(main(['--cpu', '--parts', 'ac', '--out', {str(tmp_path)!r}]))\n"
    )
    env = dict(
        os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", TRITON_INTERPRET="1", PYTHONPATH=str(ROOT)
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    report = (tmp_path / "report.md").read_text()
    assert "(a) kernels vs float64 reference: error" in report and "injected failure" in report
    assert "(c) toy DAPO steps: pass" in report
