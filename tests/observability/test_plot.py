"""`fastdapo plot`: one PNG with every DAPO monitoring panel."""

import json
import math

from click.testing import CliRunner

from fastdapo.cli import main
from fastdapo.observability.plot import PANEL_TITLES, make_figure, read_metrics, series

EXPECTED = [
    "reward/mean",
    "acc/mean",
    "eval/acc",
    "response_length/mean",
    "clip_frac",
    "entropy/mean",
    "logprob/mean_prob",
    "clip_frac/low",
    "clip_frac/high",
    "filter/kept_groups_frac",
    "rollout_corr",
]


def write_run(run_dir, steps=12):
    rows = [{"step": 0, "eval/acc": 0.3}]
    for s in range(1, steps + 1):
        rows.append(
            {
                "step": s,
                "reward/mean": -1 + s / steps,
                "acc/mean": s / (2 * steps),
                "response_length/mean": 10 + s,
                "response_length/clip_frac": 0.1,
                "entropy/mean": 2 - s / steps,
                "logprob/mean_prob": 0.5 + s / (3 * steps),
                "clip_frac/low": 0.01,
                "clip_frac/high": 0.02,
                "filter/kept_groups_frac": 0.6,
                "grad_norm": None if s == 3 else 0.5,
                "time/step": 1.0,
                "rollout_corr/kl": 1e-3,
                "rollout_corr/logp_abs_diff_mean": 0.02,
                "rollout_corr/clip_frac": 0.001,
            }
        )
    rows[-1]["eval/acc"] = 0.5
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 13, "rew')
    return rows


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_every_panel_is_drawn(tmp_path):
    write_run(tmp_path / "run")
    rows = read_metrics(tmp_path / "run")  # the cut-off last line (a killed run) is ignored
    assert len(rows) == 13
    fig = make_figure(rows)
    got = titles(fig)
    assert got == PANEL_TITLES
    joined = " | ".join(got)
    for name in EXPECTED:
        assert name in joined, name
    for ax in fig.axes:
        if ax.get_title():
            assert ax.lines, f"panel {ax.get_title()!r} is empty"
    acc_panel = next(ax for ax in fig.axes if ax.get_title().startswith("acc/mean"))
    eval_line = next(l for l in acc_panel.lines if l.get_label() == "eval acc")
    assert list(eval_line.get_xdata()) == [0, 12]


def test_null_values_are_skipped():
    xs, ys = series([{"step": 1, "loss": None}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": float("nan")}], "loss")
    assert xs == [2] and ys == [0.5] and all(math.isfinite(y) for y in ys)


def test_plot_command_writes_a_png(tmp_path):
    write_run(tmp_path / "run")
    out = tmp_path / "figs" / "toy.png"
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "run"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "run")])
    assert res.exit_code == 0 and (tmp_path / "run" / "metrics.png").exists()


def test_plot_command_without_metrics_fails_clearly(tmp_path):
    res = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert res.exit_code != 0 and "metrics.jsonl not found" in res.output


def test_an_asynchronous_run_gets_its_panel(tmp_path):
    rows = write_run(tmp_path / "run")
    assert "async: staleness and waits" not in titles(make_figure(rows))
    for r in rows[1:]:
        r.update({"async/staleness_mean": 0.5, "async/dropped_stale": 0, "async/actor_wait_s": 0.2,
                  "async/generator_wait_s": 0.1})  # fmt: skip
    fig = make_figure(rows)
    assert titles(fig) == [*PANEL_TITLES, "async: staleness and waits"]
    panel = next(ax for ax in fig.axes if ax.get_title() == "async: staleness and waits")
    assert len(panel.lines) == 2  # the waits are on the twin axis
