"""`fastdapo bench sequence-parallel` on a tiny shape: it runs S = 1 and S = 2 (two gloo processes), writes its
CSV and markdown, and S = 2 reproduces S = 1's loss and gradients. No timing or memory-ratio claims here."""

import csv
import math

from click.testing import CliRunner

from fastdapo.cli import main


def test_sequence_parallel_bench_writes_both_runs_and_is_exact(tmp_path):
    args = ["--tokens", "512", "--hidden", "64", "--layers", "2", "--vocab", "256", "--no-s1-same-threads"]
    result = CliRunner().invoke(main, ["bench", "sequence-parallel", *args, "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[1/2] S=1" in result.output and "[2/2] S=2" in result.output
    with (tmp_path / "sequence_parallel.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["S"]) for r in rows] == [1, 2]
    one, two = rows
    assert int(one["tokens_per_rank"]) == 512 and int(two["tokens_per_rank"]) == 256
    assert len(two["update_peak_mib_per_rank"].split("/")) == 2
    for r in rows:
        for key in ("update_peak_mib", "abs_peak_mib", "time_s", "mem_ratio_vs_s1", "time_ratio_vs_s1", "loss"):
            assert math.isfinite(float(r[key])), (key, r[key])
        assert float(r["abs_peak_mib"]) > 0 and float(r["time_s"]) > 0
        assert r["exact"] == "True"
        assert float(r["loss_diff_vs_s1"]) <= 1e-5 and float(r["grad_rel_diff_vs_s1"]) <= 1e-4
        assert r["command"].startswith("fastdapo bench sequence-parallel")
    md = (tmp_path / "sequence_parallel.md").read_text()
    assert "| S | procs |" in md and "Machine:" in md
