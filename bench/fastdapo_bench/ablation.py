"""`fastdapo bench ablation`: the DAPO paper's Table 1 ladder on a toy task, each rung x seed its own `fastdapo train`.

Rungs (cumulative, exactly as ``ablation_rungs`` documents): naive-grpo, overlong-filtering, clip-higher,
soft-overlong-punishment, token-level-loss, dynamic-sampling (= full DAPO). Pieces: ``ablation_plan`` (base
config, --quick preset, the runs' commands), ``ablation_runner`` (the processes, progress), ``ablation_aggregate``
(metrics -> numbers), ``ablation_report`` (CSV, markdown), ``ablation_plot`` (PNG).

Run: ``fastdapo bench ablation [--quick]``; writes ablation.csv, ablation_steps.csv, ablation.md and ablation.png
to ``--out-dir`` and each run's directory and log under ``--work-dir``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .ablation_aggregate import read_run, run_summary, step_rows
from .ablation_plan import DEFAULT_CONFIG, QUICK_SEEDS, PlanError, RunSpec, plan_runs, resolve_config
from .ablation_plot import plot_ladder
from .ablation_report import machine_info, markdown, write_csv
from .ablation_rungs import rung_names, select_rungs
from .ablation_runner import RunOutcome, child_env, run_all

__all__ = ["ablation_command", "collect"]

DEFAULT_SEEDS = 3


def _describe(spec: RunSpec) -> str:
    try:
        s = run_summary(read_run(spec.run_dir))
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    acc = f"{s['acc_step0']:.3f} -> {s['acc_final']:.3f}" if None not in (s["acc_step0"], s["acc_final"]) else "-"
    return f" | eval/acc {acc} | {s['samples']:,} samples"


def collect(outcomes: list[RunOutcome]) -> tuple[list[dict], list[dict]]:
    """(one row per run, one row per step of every successful run). A run that exited 0 without readable
    metrics counts as failed."""
    runs, steps = [], []
    for o in outcomes:
        spec = o.spec
        row = {"rung": spec.rung.name, "seed": spec.seed, "status": "ok" if o.ok else "failed",
               "returncode": o.returncode, "wall_s": round(o.wall_s, 1)}  # fmt: skip
        if o.ok:
            try:
                data = read_run(spec.run_dir)
                row.update(run_summary(data))
                steps += step_rows(spec.rung.name, spec.seed, data)
            except (OSError, ValueError, KeyError, TypeError) as e:
                row.update(status="failed", error=f"unreadable metrics: {type(e).__name__}: {e}")
        else:
            row["error"] = o.error
        row.update(run_dir=str(spec.run_dir), log=str(spec.log))
        runs.append(row)
    return runs, steps


def _command(config: str, **opts) -> str:
    argv = ["fastdapo", "bench", "ablation", "--config", config, "--seeds", str(opts["seeds"])]
    argv += ["--steps", str(opts["steps"])] if opts["steps"] is not None else []
    argv += ["--rungs", opts["rungs"]] if opts["rungs"] else []
    for s in opts["sets"]:
        argv += ["--set", s]
    argv += ["--quick"] if opts["quick"] else []
    argv += ["--threads", str(opts["threads"]), "--out-dir", str(opts["out_dir"]), "--work-dir", str(opts["work_dir"])]
    return shlex.join(argv)


@click.command("ablation")
@click.option(
    "--config",
    default=None,
    metavar="YAML",
    help=f"Base config of every run. Default {DEFAULT_CONFIG} (the long-reasoning chain toy task; outside a "
    "checkout, the copy the package carries). configs/toy.yaml runs the ladder on the arithmetic toy task.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help=f"Seeds per rung (run.seed = 0..N-1). Default {DEFAULT_SEEDS}, {QUICK_SEEDS} with --quick.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Training steps of every run (run.steps). Default: the base config's (2 with --quick).",
)
@click.option(
    "--rungs",
    default=None,
    metavar="NAME[,NAME...]",
    help=f"Run only these rungs (each still with its full cumulative settings): {', '.join(rung_names())}.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Config override for every run (repeatable), e.g. --set optimizer.lr=1e-3. The keys the rungs "
    "set (algorithm.loss_agg_mode, eps_low, eps_high, overlong_filtering, overlong_shaping, "
    "dynamic_sampling) and run.seed / output_dir / resume are refused.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="CI-sized preset: a tiny toy model (built in seconds), 2 steps of 4 prompts x 4 responses, one "
    "seed; the whole ladder in a few minutes on 2 cores. Its numbers say nothing about the ladder.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch threads of each run (OMP_NUM_THREADS). 1 is far faster on a shared small machine.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where ablation.csv, ablation_steps.csv, ablation.md and ablation.png go.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/ablation"),
    show_default=True,
    help="Run directories (WORK/RUNG/seedK/) and logs (WORK/logs/); runs start over.",
)
@click.option("--dry-run", is_flag=True, help="Print every run's `fastdapo train` command and exit.")
def ablation_command(config, seeds, steps, rungs, sets, quick, threads, out_dir, work_dir, dry_run) -> None:
    """The DAPO paper's Table 1 ladder: naive GRPO, then + overlong filtering, + Clip-Higher (eps_high 0.28),
    + soft overlong punishment, + token-level loss, + dynamic sampling (= DAPO), cumulatively, each rung x seed in
    its own `fastdapo train` process, one after another.

    Reports per rung the held-out accuracy at the end (mean and 95% t-interval over seeds), the final entropy and
    response length, the clip fractions and the responses generated for training; the per-step CSV and the plot
    give their trajectories. The dual clip is the base config's on every rung (configs/toy.yaml: off; verl's 3.0 with
    --set algorithm.dual_clip=3.0).
    A failed run is reported in one line with its log and the bench goes on; the exit status is then 1.
    """
    seeds = seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    try:
        config = resolve_config(config)
        chosen = select_rungs(rungs)
        specs = plan_runs(config, chosen, seeds, work_dir, quick=quick, steps=steps, user_sets=list(sets))
    except (PlanError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    command = _command(config, seeds=seeds, steps=steps, rungs=rungs, sets=sets, quick=quick, threads=threads,
                       out_dir=out_dir, work_dir=work_dir)  # fmt: skip
    if dry_run:
        click.echo("\n".join(s.shell() for s in specs))
        return
    click.echo(f"ablation: {len(chosen)} rung(s) x {seeds} seed(s) = {len(specs)} `fastdapo train` runs, one at a "
               f"time, {threads} thread(s) each; base config {config}; runs in {work_dir}")  # fmt: skip
    outcomes, interrupted = run_all(specs, child_env(threads), echo=click.echo, describe=_describe)
    runs, steps_rows = collect(outcomes)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in chosen]
    text = markdown(runs, names, machine_info(), command, config)
    if runs:
        write_csv(out_dir / "ablation.csv", runs)
    if steps_rows:
        write_csv(out_dir / "ablation_steps.csv", steps_rows)
    (out_dir / "ablation.md").write_text(text)
    plot_ladder(steps_rows, names, out_dir / "ablation.png", title=f"DAPO ablation ladder ({config})")
    click.echo("\n" + text)
    click.echo(f"wrote {out_dir / 'ablation.csv'}, ablation_steps.csv, ablation.md and ablation.png")
    if interrupted:
        sys.exit(130)
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        names = ", ".join(f"{r['rung']} seed {r['seed']} ({r['log']})" for r in failed)
        raise click.ClickException(f"{len(failed)} of {len(runs)} runs failed: {names}")


if __name__ == "__main__":
    ablation_command()
