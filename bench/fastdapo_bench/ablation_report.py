"""The ablation's files: ablation.csv (one row per rung x seed), ablation_steps.csv (one row per step of every run)
and ablation.md (the machine, versions and command first, then one row per rung)."""

from __future__ import annotations

import csv
from pathlib import Path

from .ablation_aggregate import rung_summary
from .ablation_rungs import RUNGS
from .machine import machine_info, machine_line

__all__ = ["machine_info", "markdown", "write_csv"]

PAPER_AIME24 = dict(zip([r.name for r in RUNGS], (30, 36, 38, 41, 42, 50)))  # the paper's Table 1, avg@32


def write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for r in rows:  # the union of keys, in first-seen order (a failed run has fewer)
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _f(v, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _acc(s: dict) -> str:
    if s["acc_mean"] is None:
        return "-"
    if s["acc_low"] is None:
        return f"{s['acc_mean']:.3f} (one seed: no interval)"
    half = (s["acc_high"] - s["acc_low"]) / 2
    return f"{s['acc_mean']:.3f} ± {half:.3f} [{s['acc_low']:.3f}, {s['acc_high']:.3f}]"


def rung_rows(run_rows: list[dict], rung_names: list[str]) -> list[tuple[str, dict, int]]:
    """(rung, summary of its successful runs, failed count) per rung, in ladder order."""
    out = []
    for name in rung_names:
        mine = [r for r in run_rows if r["rung"] == name]
        ok = [r for r in mine if r["status"] == "ok" and r.get("acc_final") is not None]
        out.append((name, rung_summary(ok), len(mine) - len(ok)))
    return out


def markdown(run_rows: list[dict], rung_names: list[str], info: dict, command: str, base_config: str) -> str:
    titles = {r.name: r.title for r in RUNGS}
    header = ["rung", "paper AIME24", "seeds", "held-out acc (mean ± 95% t, [interval])", "gain vs step 0",
              "final entropy", "final length", "clip frac high / low", "samples consumed", "wall s / run"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s, failed in rung_rows(run_rows, rung_names):
        seeds = f"{s['seeds_ok']}" + (f" ({failed} failed)" if failed else "")
        cells = [titles[name], str(PAPER_AIME24[name]), seeds, _acc(s), _f(s["acc_gain_mean"], "{:+.3f}"),
                 _f(s["entropy_final"], "{:.4f}"), _f(s["length_final"], "{:.1f}"),
                 f"{_f(s['clip_frac_high_mean'], '{:.4f}')} / {_f(s['clip_frac_low_mean'], '{:.4f}')}",
                 _f(s["samples"], "{:,.0f}"), _f(s["wall_s"], "{:.0f}")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    steps = sorted({r["steps"] for r in run_rows if r.get("steps")})
    dual = sorted(
        {"off" if r.get("dual_clip") is None else str(r["dual_clip"]) for r in run_rows if r["status"] == "ok"}
    )
    failed = [r for r in run_rows if r["status"] != "ok"]
    parts = [
        "# DAPO ablation ladder (the paper's Table 1)",
        machine_line(info),
        f"Command: `{command}`",
        f"Base config: `{base_config}`; steps per run: {', '.join(map(str, steps)) or '-'}; dual clip "
        f"(`algorithm.dual_clip`, not a rung setting): {', '.join(dual) or '-'}. Each rung x seed is its own "
        "`fastdapo train` process; per-run rows in ablation.csv, per-step rows in ablation_steps.csv.",
        "\n".join(lines),
        "held-out acc: `eval/acc` at the last step (sampled accuracy on the held-out problems), mean over seeds "
        "and a 95% Student-t interval (mean ± t(0.975, n-1)·s/√n); gain: the same minus the step-0 evaluation. "
        "final entropy / length: `entropy/mean` and `response_length/mean` at the last step, seed-mean. "
        "clip frac: `clip_frac/high` / `clip_frac/low` averaged over steps and seeds. samples consumed: responses "
        "generated for training, summed over steps (filter/gen_batches x prompts per round x rollout.n), "
        "seed-mean. paper AIME24: the DAPO paper's Table 1 (Qwen2.5-32B, avg@32), for the ladder's shape only.",
    ]
    if failed:
        parts.append("Failed runs: " + "; ".join(f"{r['rung']} seed {r['seed']} ({r['log']})" for r in failed))
    return "\n\n".join(parts) + "\n"
