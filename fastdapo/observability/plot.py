"""`fastdapo plot RUN_DIR`: the DAPO monitoring panels from RUN_DIR/metrics.jsonl, as one PNG.

The panels are the curves the DAPO paper watches: reward and accuracy (with the evaluation points),
response length with the truncated fraction, entropy, mean token probability, how often each side
of the decoupled clip is active, and the fraction of groups kept by dynamic sampling; plus how far the
rollout engine's log-probs are from the trainer's (``rollout_corr/*``, when the engine records them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

# (title, [(metric, label, axis)]), axis "right" = twin y axis
PANELS = [
    ("reward/mean", [("reward/mean", "reward", "left")]),
    ("acc/mean (+ eval/acc)", [("acc/mean", "train acc", "left"), ("eval/acc", "eval acc", "points")]),
    (
        "response_length/mean (+ clip_frac)",
        [("response_length/mean", "mean length", "left"), ("response_length/clip_frac", "truncated frac", "right")],
    ),
    ("entropy/mean", [("entropy/mean", "entropy", "left")]),
    ("logprob/mean_prob", [("logprob/mean_prob", "mean token prob", "left")]),
    (
        "clip_frac/low & clip_frac/high",
        [
            ("clip_frac/low", "low (r < 1-eps_low, A < 0)", "left"),
            ("clip_frac/high", "high (r > 1+eps_high, A > 0)", "left"),
        ],
    ),
    ("filter/kept_groups_frac", [("filter/kept_groups_frac", "kept groups", "left")]),
    ("grad_norm", [("grad_norm", "grad norm", "left")]),
    (
        "rollout_corr: engine vs trainer",
        [
            ("rollout_corr/logp_abs_diff_mean", "mean |delta logp|", "left"),
            ("rollout_corr/kl", "KL (k3)", "left"),
            ("rollout_corr/clip_frac", "frac outside cap", "right"),
        ],
    ),
]
PANEL_TITLES = [t for t, _ in PANELS]
# runs with asynchronous rollouts (rollout.max_staleness >= 1) get one more panel
ASYNC_PANEL = (
    "async: staleness and waits",
    [
        ("async/staleness_mean", "mean staleness (updates)", "left"),
        ("async/dropped_stale", "groups dropped as stale", "left"),
        ("async/actor_wait_s", "actor waited for samples (s)", "right"),
        ("async/generator_wait_s", "generator waited (s)", "right"),
    ],
)


def panels_for(rows: list[dict]) -> list:
    return PANELS + ([ASYNC_PANEL] if any("async/staleness_mean" in r for r in rows) else [])


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed run
                continue
    return rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(int(r.get("step", 0)))
            ys.append(float(v))
    return xs, ys


def make_figure(rows: list[dict], title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = panels_for(rows)
    nrows = -(-len(panels) // 3)
    fig, axes = plt.subplots(nrows, 3, figsize=(17, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, curves) in zip(axes.flat, panels):
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        twin = None
        drawn = 0
        for i, (key, label, axis) in enumerate(curves):
            xs, ys = series(rows, key)
            if not xs:
                continue
            drawn += 1
            color = f"C{i}"
            if axis == "points":
                ax.plot(xs, ys, "o", color="C3", label=label, markersize=6)
            elif axis == "right":
                twin = twin or ax.twinx()
                twin.plot(xs, ys, color=color, label=label, alpha=0.8)
                twin.set_ylabel(label, color=color)
            else:
                ax.plot(xs, ys, color=color, label=label, marker="." if len(xs) < 40 else None)
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif len(curves) > 1:
            handles, labels = ax.get_legend_handles_labels()
            if twin is not None:
                h2, l2 = twin.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            ax.legend(handles, labels, fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    rows = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "metrics.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    steps = max((r.get("step", 0) for r in rows), default=0)
    fig = make_figure(rows, title=f"{Path(run_dir).resolve().name}: {steps} steps")
    fig.savefig(out, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


@click.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="PNG to write (default: RUN_DIR/metrics.png)."
)
def plot_command(run_dir: str, out: str | None) -> None:
    """Plot the DAPO monitoring panels of a run (reward, accuracy, length, entropy, clip fractions,
    dynamic-sampling kept fraction) from RUN_DIR/metrics.jsonl into a PNG."""
    try:
        path = plot_run(run_dir, out)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(path))
