"""Sample generations in samples.jsonl, resume truncation, and the optional TensorBoard / W&B sinks."""

import builtins
import json
from types import SimpleNamespace

import pytest

from fastdapo.algorithm.dynamic_sampling import Group
from fastdapo.config import load_config
from fastdapo.data.records import PromptRecord
from fastdapo.observability.runlog import RunLog
from fastdapo.observability.samples import SampleLog
from fastdapo.observability.sinks import build_sinks
from fastdapo.rollout.base import Generation


def group(i):
    gens = [
        Generation(prompt_index=0, prompt_ids=[1, 2], response_ids=[3] * (k + 1), text=f"Answer: {k}", truncated=k == 2)
        for k in range(3)
    ]
    return Group(
        prompt=PromptRecord(prompt=f"q{i}", prompt_ids=[1, 2], ground_truth="1"),
        generations=gens,
        scores=[-1.0, 1.0, -1.5],
        accs=[False, True, False],
    )


def test_samples_every_k_steps_and_truncated_on_resume(tmp_path):
    log = SampleLog(tmp_path, every=2)
    for step in range(1, 7):
        log.write(step, [group(i) for i in range(6)])
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [2, 4, 6]
    assert len([r for r in rows if r["step"] == 2]) == 4 * 3  # the first 4 groups, every response
    r = rows[1]
    assert (r["prompt"], r["response"], r["reward"], r["acc"], r["ground_truth"]) == ("q0", "Answer: 1", 1.0, True, "1")
    assert rows[2]["truncated"] and rows[0]["informative"]
    SampleLog(tmp_path, every=2, truncate_after_step=4)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [2, 4]


def test_off_by_default_and_zero_disables_samples(tmp_path):
    cfg = load_config()
    assert not cfg.run.tensorboard and not cfg.run.wandb and build_sinks(cfg, tmp_path) == []
    SampleLog(tmp_path, every=0).write(10, [group(0)])
    assert not (tmp_path / "samples.jsonl").exists()


def test_runlog_fresh_start_clears_and_resume_cuts_back(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(6)))
    cfg = load_config()
    RunLog(tmp_path, cfg).start(resumed_step=3)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    RunLog(tmp_path, cfg).start(resumed_step=None)
    assert (tmp_path / "metrics.jsonl").read_text() == ""


@pytest.mark.parametrize("flag, package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_missing_package_gives_an_install_hint(tmp_path, monkeypatch, flag, package):
    real_import = builtins.__import__

    def no_tracking(name, *args, **kwargs):
        if name.split(".")[0] == package or name == "torch.utils.tensorboard":
            raise ImportError(f"No module named {package!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tracking)
    cfg = load_config()
    setattr(cfg.run, flag, True)
    with pytest.raises(RuntimeError, match=rf"run.{flag}=true needs the {package} package: pip install '{package}'"):
        build_sinks(cfg, tmp_path)


def test_sinks_receive_metrics_and_samples(tmp_path, monkeypatch):
    seen = []
    fake = SimpleNamespace(
        metrics=lambda step, m: seen.append(("m", step, m.get("loss"))),
        samples=lambda step, rows: seen.append(("s", step, len(rows))),
        close=lambda: seen.append("c"),
    )
    monkeypatch.setattr("fastdapo.observability.runlog.build_sinks", lambda cfg, run_dir: [fake])
    cfg = load_config()
    cfg.run.log_samples_every = 1
    log = RunLog(tmp_path, cfg).start(None)
    log.metrics({"step": 1, "loss": 0.5})
    log.samples(1, [group(0)])
    log.close()
    assert seen == [("m", 1, 0.5), ("s", 1, 3), "c"]
