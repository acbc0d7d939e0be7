"""Reward-fidelity benchmark on a slice of the fixtures: the reference decisions it measures against."""

import json

from click.testing import CliRunner

from fastdapo_bench.reward_fidelity import DEFAULT_SETS, reference_decision, renderings, reward_fidelity_command


def test_default_sets_are_the_fixtures():
    assert all(p.is_file() and p.parent.name == "fixtures" for p in DEFAULT_SETS)


def test_reference_decision_keeps_the_reference_bugs():
    assert reference_decision("Answer: 204", "204")
    assert not reference_decision("Answer: 204.", "204")
    assert reference_decision("Answer: units", "units")  # empty == empty
    assert reference_decision("no answer line", "[INVALID]")  # the sentinel


def test_renderings_cover_the_ways_models_answer():
    kinds = [k for k, _ in renderings("204")]
    assert {
        "plain",
        "dollar",
        "answer_boxed",
        "trailing_period",
        "bold_answer",
        "unit_listed",
        "far_from_end",
        "boxed_only",
        "wrong_number",
        "unevaluated",
    } <= set(kinds)
    assert "Answer: 2 \\times 102" in [t for _, t in renderings("204")]


def test_command_reports_agreement(tmp_path):
    rows = [json.loads(line) for line in DEFAULT_SETS[0].read_text().splitlines()[:3]]
    rows.append({"reward_model": {"ground_truth": "units"}})  # normalizes to "" (deliberate difference)
    data = tmp_path / "mini.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "report.json"
    res = CliRunner().invoke(reward_fidelity_command, [str(data), "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    n = report["sets"]["mini"]["renderings"]
    # dapo differs from the reference only on the empty-normalizing ground truth it refuses
    assert {d["ground_truth"] for d in report["diffs"]["dapo"]} == {"units"}
    assert report["sets"]["mini"]["dapo"] < 1.0
    kinds = report["kinds"]
    assert kinds["unevaluated"]["math_verify"] == kinds["unevaluated"]["n"]  # refused, as the reference
    assert kinds["trailing_period"]["math_verify"] < kinds["trailing_period"]["n"]  # the lenient difference
    assert "| mini |" in res.output and n == len(rows) * 12 - 2


def test_missing_file_is_one_line(tmp_path):
    res = CliRunner().invoke(reward_fidelity_command, [str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "set file not found" in res.output and "Traceback" not in res.output
