"""Reward-fidelity benchmark, offline: the renderings, and the command against a fake verl wheel built
here (tests/bench/test_verl_math_dapo.py); the real wheels are the bench's own run, not CI's."""

import json
import re
import subprocess

import pytest
from click.testing import CliRunner
from test_verl_math_dapo import FAKE_MATH_DAPO, fake_wheel

from fastdapo.rewards import dapo_reward
from fastdapo_bench import verl_math_dapo as vm
from fastdapo_bench.reward_fidelity import DEFAULT_SETS, reward_fidelity_command
from fastdapo_bench.reward_renderings import renderings


def test_default_sets_are_the_fixtures():
    assert all(p.is_file() and p.parent.name == "fixtures" for p in DEFAULT_SETS)


@pytest.fixture
def mini_set(tmp_path):
    rows = [json.loads(line) for line in DEFAULT_SETS[0].read_text().splitlines()[:3]]
    data = tmp_path / "mini.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    return data, [r["reward_model"]["ground_truth"] for r in rows]


def test_command_reports_agreement_per_verl_version(tmp_path, monkeypatch, mini_set):
    data, gts = mini_set
    monkeypatch.setattr(vm, "_pip", lambda *a: pytest.fail(f"no network in tests: pip {a}"))
    fake_wheel(tmp_path / "cache", "0.0.1")
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    args = [str(data), "--cache-dir", str(tmp_path / "cache"), "--verl-version", "0.0.1", "--reward", "dapo"]
    res = CliRunner().invoke(reward_fidelity_command, [*args, "--json", str(out), "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())

    # the fake accepts a stripped "Answer: X" line verbatim: expected decisions, computed here
    def fake(text, gt):
        found = re.findall(r"Answer:\s*([^\n]+)", text[-300:])
        return bool(found) and found[-1].strip() == gt

    pairs = [(text, gt) for gt in gts for _, text in renderings(gt.strip())]
    want = sum(dapo_reward(t, g).acc == fake(t, g) for t, g in pairs) / len(pairs)
    overall = report["overall"]["verl"]["0.0.1"]
    assert overall["agree"]["dapo"] == pytest.approx(want) and 0 < want < 1
    assert overall["accepts"] == pytest.approx(sum(fake(t, g) for t, g in pairs) / len(pairs))
    assert report["sets"]["mini"]["verl"]["0.0.1"]["agree"]["dapo"] == pytest.approx(want)
    kinds = report["kinds"]
    assert kinds["dollar"]["verl"]["0.0.1"]["dapo"] == 0  # "$X$" is not verbatim X for the fake
    assert report["diffs"]["0.0.1"]["dapo"]["dollar"]["count"] == kinds["dollar"]["n"] == 3
    assert report["verl"]["0.0.1"]["wheel"] == "verl-0.0.1-py3-none-any.whl"
    text = md.read_text()
    assert text.startswith("# Reward fidelity") and "verl 0.0.1" in text and "Machine:" in text
    assert "Command: `fastdapo bench reward-fidelity" in text
    assert "| `dapo` |" in res.output and "| mini | 3 |" in res.output


def test_versions_that_differ_are_shown(tmp_path, mini_set):
    data, _ = mini_set
    cache = tmp_path / "cache"
    fake_wheel(cache, "0.0.1")
    fake_wheel(cache, "0.0.2", FAKE_MATH_DAPO.replace("found[-1].strip() == ground_truth", "False"))
    args = [str(data), "--cache-dir", str(cache), "--verl-version", "0.0.1", "--verl-version", "0.0.2"]
    res = CliRunner().invoke(reward_fidelity_command, [*args, "--reward", "dapo+reward_boxed_fallback"])
    assert res.exit_code == 0, res.output
    assert "Where verl 0.0.1 / 0.0.2 decide differently" in res.output
    assert "| `Answer: X` | 3 | 3 |" in res.output  # the only kind the fake 0.0.1 accepts


def test_fetch_failure_is_one_line(tmp_path, mini_set, monkeypatch):
    monkeypatch.setattr(vm, "_pip", lambda *a: subprocess.CompletedProcess(a, 1, "", "ERROR: no network"))
    args = [str(mini_set[0]), "--cache-dir", str(tmp_path), "--verl-version", "0.9.0"]
    res = CliRunner().invoke(reward_fidelity_command, args)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("reward-fidelity: could not fetch verl==0.9.0 (ERROR: no network)")


def test_missing_file_is_one_line(tmp_path):
    res = CliRunner().invoke(reward_fidelity_command, [str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "set file not found" in res.output and "Traceback" not in res.output
