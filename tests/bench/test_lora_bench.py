import csv

from click.testing import CliRunner

from fastdapo_bench.lora import lora_command, markdown, measure


def test_lora_bench_counts_adapters_and_their_optimizer_state():
    full, lora = measure("toy", 0, steps=1, seqs=2), measure("toy", 4, steps=1, seqs=2)
    assert full["trainable"] == full["params"]
    # rank 4 on q, k, v, o (128->128, 128->64 twice, 128->128) and gate, up, down (128<->256), 2 layers
    assert lora["trainable"] == 2 * 4 * (256 + 192 + 192 + 256 + 3 * 384)
    assert lora["params"] == full["params"] + lora["trainable"]
    # Adam's two moments plus ZeRO-2's fp32 master copy: 12 bytes per trainable parameter
    for r in (full, lora):
        assert abs(r["optimizer_mib"] * 2**20 - 12 * r["trainable"]) <= 0.005 * 2**20
    assert full["step_s"] > 0 and lora["step_s"] > 0
    assert "lora r=4" in markdown([full, lora])


def test_lora_command_runs_each_measurement_in_its_own_process_and_writes_its_results(tmp_path):
    out = tmp_path / "lora"
    args = ["--models", "toy", "--rank", "2", "--steps", "1", "--seqs", "2", "--out-dir", str(out)]
    result = CliRunner().invoke(lora_command, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "lora.csv").open()))
    assert [r["mode"] for r in rows] == ["full", "lora r=2"]
    assert int(rows[1]["trainable"]) == 2 * 2 * (256 + 192 + 192 + 256 + 3 * 384)
    md = (out / "lora.md").read_text()
    assert "| toy | lora r=2 |" in md and "Command: `" in md and "Machine: " in md


def test_lora_command_names_an_unknown_model_in_one_line(tmp_path):
    result = CliRunner().invoke(lora_command, ["--models", "toy,70b", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--models: '70b': choose from toy, 30m" in result.output
    assert not any(tmp_path.iterdir())
