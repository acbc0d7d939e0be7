"""ablation.png: accuracy, entropy, response length and clip fractions against the step, one line per rung
(the mean over its seeds at each step). Accuracy is the training samples' `acc/mean` (every generated response,
so rungs with and without dynamic sampling compare), with the held-out `eval/acc` as markers where evaluated."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from .ablation_rungs import RUNGS

__all__ = ["plot_ladder", "seed_mean"]

# (title, [(key, line style)]); style "o" = markers only
PANELS = [
    ("accuracy: train acc/mean (line), held-out eval/acc (markers)", [("acc/mean", "-"), ("eval/acc", "o")]),
    ("entropy/mean", [("entropy/mean", "-")]),
    ("response_length/mean", [("response_length/mean", "-")]),
    ("clip_frac/high (solid), clip_frac/low (dashed)", [("clip_frac/high", "-"), ("clip_frac/low", "--")]),
]


def seed_mean(step_rows: list[dict], rung: str, key: str) -> tuple[list[int], list[float]]:
    """Steps and the mean over seeds of ``key`` at each step where any seed of ``rung`` has it."""
    acc: dict[int, list[float]] = defaultdict(list)
    for r in step_rows:
        v = r.get(key)
        if r["rung"] == rung and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            acc[int(r["step"])].append(float(v))
    steps = sorted(acc)
    return steps, [sum(acc[s]) / len(acc[s]) for s in steps]


def plot_ladder(step_rows: list[dict], rung_names: list[str], out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {r.name: r.title for r in RUNGS}
    order = [r.name for r in RUNGS]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), squeeze=False)
    for ax, (panel, curves) in zip(axes.flat, PANELS):
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for name in rung_names:
            color = f"C{order.index(name)}"  # a rung keeps its color in any --rungs subset
            for j, (key, style) in enumerate(curves):
                xs, ys = seed_mean(step_rows, name, key)
                if not xs:
                    continue
                label = titles[name] if j == 0 else None
                if style == "o":
                    ax.plot(xs, ys, "o", color=color, markersize=6, alpha=0.8)
                else:
                    ax.plot(xs, ys, style, color=color, label=label, marker="." if len(xs) < 40 else None)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
