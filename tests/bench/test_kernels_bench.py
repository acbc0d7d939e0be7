"""`fastdapo bench kernels` end to end on a tiny shape: every provider side by side, ratios to naive, and its
results files (CSV, markdown with the command and machine)."""

import csv

from click.testing import CliRunner

from fastdapo_bench.kernels import kernels_command


def test_kernels_bench_writes_ratios_to_naive_and_its_provenance(tmp_path):
    args = ["--shapes", "16x32x64", "--providers", "naive,torch", "--passes", "fwd,step", "--reps", "1",
            "--warmup", "0", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(kernels_command, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "kernels.csv").open()))
    assert sorted((r["provider"], r["pass"]) for r in rows) == [("naive", "fwd"), ("naive", "step"), ("torch", "fwd"),
                                                                ("torch", "step")]  # fmt: skip
    assert all(float(r["time_ms"]) > 0 for r in rows)
    assert [float(r["time_vs_naive"]) for r in rows if r["provider"] == "naive"] == [1.0, 1.0]
    md = (tmp_path / "kernels.md").read_text()
    assert "| torch | 16x32x64 | step |" in md and "Command: `" in md and "liger-kernel " in md
