"""End-to-end DAPO step time: fastdapo vs TRL's ``GRPOTrainer(loss_type="dapo")`` on CPU, side by side.

Both frameworks train the same tiny model (the built-in warm-started toy Qwen2 and its character
tokenizer, loaded from one local directory) on the same toy-task prompts, in the same order, with
the same group size G, prompts per step, maximum completion length, sampling (temperature 1.0,
top_p 1.0), reward (``fastdapo.rewards.dapo_math_reward``, no overlong shaping), clip range
(0.2 / 0.28), no KL term, fp32, no gradient checkpointing, constant learning rate, and ONE
optimizer update per step (one mini-batch = the whole step's completions on both sides).
fastdapo runs with dynamic sampling off, since TRL has none.

Each framework runs in its own subprocess with the same thread count (``OMP_NUM_THREADS`` and
``torch.set_num_threads``); the first step of each is a warm-up and is not counted. A step is
rollout + reward + advantages + (fastdapo: old log-probs) + forward/backward + optimizer step.

Run: ``python -m fastdapo_bench.e2e`` or ``fastdapo bench e2e``; writes ``e2e.csv``, ``e2e.md`` and
``e2e_steps.csv`` to ``--out``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

__all__ = ["e2e_command", "run_e2e", "summarize", "toy_prompt_rows", "default_model_dir"]

FRAMEWORKS = ("fastdapo", "trl")
_RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# ---- helpers shared with the worker processes (fastdapo_bench.e2e_fastdapo, fastdapo_bench.e2e_trl) ----


def apply_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)


def read_spec(path: str) -> dict:
    return json.loads(Path(path).read_text())


def write_result(path: str, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=1))


def toy_prompt_rows(spec: dict, tokenizer) -> list[dict]:
    """The toy task's training prompts (plain text, not chat) in the order fastdapo streams them unshuffled."""
    from fastdapo.toy.task import to_records, toy_splits

    train, _ = toy_splits(spec["max_operand"], spec["eval_size"])
    return [{"prompt": r.prompt, "ground_truth": r.ground_truth} for r in to_records(train, tokenizer)]


def default_model_dir() -> Path:
    """The built-in warm-started toy model (built and cached on first use)."""
    from fastdapo.config import load_config
    from fastdapo.toy.model import toy_model_dir

    return toy_model_dir(load_config(None)).resolve()


# ---- harness ----


def _run_worker(framework: str, spec: dict, timeout_s: float | None) -> dict:
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work / f"{framework}.spec.json", work / f"{framework}.result.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    threads = str(spec["threads"])
    # Each worker is a single process: a rank layout left in this process's environment (by a launcher,
    # or by an in-process run) would make TRL's accelerate wait for a process group.
    inherited = {k: v for k, v in os.environ.items() if k not in _RANK_VARS}
    env = {
        **inherited,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "DS_ACCELERATOR": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        # the workers import exactly what this process imports (a checkout, an editable or a wheel install)
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    log_path = work / f"{framework}.log"
    with log_path.open("w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", f"fastdapo_bench.e2e_{framework}", str(spec_path), str(result_path)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text()[-3000:]
        raise click.ClickException(f"{framework} run failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return json.loads(result_path.read_text())


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(result: dict, spec: dict) -> dict:
    """Medians over the timed steps: every step after the first of each run (round), unless only one ran."""
    runs = result.get("runs") or [result["steps"]]
    timed = [s for run in runs for s in (run[1:] if len(run) > 1 else run)]
    step_s = _median(s["time/step"] for s in timed)
    rollout_s = _median(s.get("time/rollout") for s in timed)
    total_t = sum(s["time/step"] for s in timed)
    row = {
        "framework": result["framework"],
        "rounds": len(runs),
        "steps_run": len(runs[0]),
        "steps_timed": len(timed),
        "median_step_s": round(step_s, 4) if step_s is not None else None,
        "min_step_s": round(min(s["time/step"] for s in timed), 4) if timed else None,
        "median_rollout_s": round(rollout_s, 4) if rollout_s is not None else None,
        "median_update_s": round(step_s - rollout_s, 4) if step_s is not None and rollout_s is not None else None,
        "mean_response_len": round(
            statistics.mean(s["response_length/mean"] for s in timed if s.get("response_length/mean") is not None), 2
        )
        if timed
        else None,
        "tokens_per_step": round(statistics.mean(s["tokens"] for s in timed), 1) if timed else None,
        "tokens_per_s": round(sum(s["tokens"] for s in timed) / total_t, 1) if total_t else None,
        "threads": result["threads"],
        "model": Path(spec["model_dir"]).name,
        "prompts": spec["prompts"],
        "group_size": spec["group_size"],
        "max_new_tokens": spec["max_new_tokens"],
    }
    for key in ("time/old_logprobs", "time/train"):
        if timed and key in timed[0]:
            v = _median(s.get(key) for s in timed)
            row["median_" + key.split("/")[1] + "_s"] = round(v, 4) if v is not None else None
    return row


def run_e2e(
    *,
    prompts: int = 16,
    group_size: int = 8,
    max_new_tokens: int = 24,
    steps: int = 5,
    threads: int = 1,
    model_dir: Path | None = None,
    eval_size: int = 16,
    max_operand: int = 20,
    seed: int = 0,
    lr: float = 2e-4,
    rounds: int = 1,
    frameworks=FRAMEWORKS,
    fastdapo_sets=(),
    work_dir: Path | None = None,
    timeout_s: float | None = None,
) -> tuple[list[dict], list[dict]]:
    """Runs every framework ``rounds`` times; returns (summary rows, per-step rows)."""
    if threads < 1:
        raise click.BadParameter("--threads must be >= 1 (the same explicit count for both frameworks)")
    if rounds < 1 or steps < 1:
        raise click.BadParameter("--rounds and --steps must be >= 1")
    model_dir = Path(model_dir).resolve() if model_dir else default_model_dir()
    # Run dirs and logs go to a temporary folder, removed after a successful run (kept on failure).
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="fastdapo-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "prompts": prompts,
        "group_size": group_size,
        "max_new_tokens": max_new_tokens,
        "steps": steps,
        "threads": threads,
        "model_dir": str(model_dir),
        "eval_size": eval_size,
        "max_operand": max_operand,
        "seed": seed,
        "lr": lr,
        "work_dir": str(work),
        "extra_sets": list(fastdapo_sets),
    }
    merged = {fw: {"framework": fw, "runs": [], "loads": []} for fw in frameworks}
    per_step = []
    for rnd in range(rounds):  # rounds alternate the order so that drifting machine load hits both alike
        for fw in frameworks if rnd % 2 == 0 else tuple(reversed(frameworks)):
            load_before = os.getloadavg()[0]
            result = _run_worker(fw, {**spec, "work_dir": str(work / f"round{rnd + 1}")}, timeout_s)
            m = merged[fw]
            m["runs"].append(result["steps"])
            m["loads"].append((load_before + os.getloadavg()[0]) / 2)
            m["threads"] = result["threads"]
            per_step += [
                {"framework": fw, "round": rnd + 1, **{k.replace("/", "_"): v for k, v in s.items()}}
                for s in result["steps"]
            ]
    rows = []
    for m in merged.values():
        row = summarize(m, spec)
        row["load_avg_1m"] = round(statistics.mean(m["loads"]), 2)
        rows.append(row)
    if not work_dir:
        shutil.rmtree(work, ignore_errors=True)
    base = next((r["median_step_s"] for r in rows if r["framework"] == "trl"), None)
    for r in rows:
        r["speedup_vs_trl"] = round(base / r["median_step_s"], 3) if base and r["median_step_s"] else None
    return rows, per_step


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


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
    (out / "e2e.md").write_text("\n".join(lines) + "\n")
    return [out / "e2e.csv", out / "e2e_steps.csv", out / "e2e.md"]


@click.command("e2e")
@click.option("--prompts", default=16, show_default=True, help="Prompts per step (fastdapo train_batch_size).")
@click.option("--group-size", default=8, show_default=True, help="Responses per prompt G.")
@click.option("--max-new-tokens", default=24, show_default=True, help="Maximum completion length L.")
@click.option("--steps", default=5, show_default=True, help="Steps per framework; the first is a warm-up.")
@click.option(
    "--threads",
    default=1,
    show_default=True,
    help="torch CPU threads for BOTH frameworks (OMP_NUM_THREADS and torch.set_num_threads).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where e2e.csv, e2e.md and e2e_steps.csv are written.",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Local Hugging Face model dir (default: the built-in warm-started toy model).",
)
@click.option(
    "--eval-size",
    default=16,
    show_default=True,
    help="Toy eval split size (fastdapo evaluates it before and after, outside the step times).",
)
@click.option(
    "--rounds",
    default=1,
    show_default=True,
    help="Runs per framework, alternating the order; timed steps are pooled (warm-up dropped per run).",
)
@click.option(
    "--framework",
    "frameworks",
    multiple=True,
    type=click.Choice(FRAMEWORKS),
    default=FRAMEWORKS,
    show_default=True,
    help="Which frameworks to run (repeatable).",
)
@click.option(
    "--set",
    "fastdapo_sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra fastdapo config override (repeatable), e.g. distributed.zero_stage=0.",
)
@click.option("--seed", default=0, show_default=True)
def e2e_command(out: Path, **kwargs) -> None:
    """End-to-end DAPO step time: fastdapo vs TRL GRPOTrainer(loss_type="dapo") on the same toy shape (CPU)."""
    from rich.console import Console
    from rich.table import Table

    rows, per_step = run_e2e(**kwargs)
    info = rows[0]
    title = (
        f"e2e DAPO step time: {info['prompts']} prompts x G={info['group_size']}, L={info['max_new_tokens']}, "
        f"{info['rounds']} x {info['steps_run']} steps ({info['steps_timed']} timed), model {info['model']}, CPU, "
        f"{info['threads']} thread(s)"
    )
    table = Table(title=title)
    # rollout = generation + reward (+ advantages on TRL); rest = everything else in the step
    for col in (
        "framework",
        "threads",
        "s/step",
        "min",
        "rollout",
        "rest",
        "resp len",
        "tok/step",
        "tok/s",
        "load",
        "vs TRL",
    ):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for r in rows:
        table.add_row(
            r["framework"],
            str(r["threads"]),
            _fmt(r["median_step_s"]),
            _fmt(r["min_step_s"]),
            _fmt(r["median_rollout_s"]),
            _fmt(r["median_update_s"]),
            _fmt(r["mean_response_len"], ".1f"),
            _fmt(r["tokens_per_step"], ".0f"),
            _fmt(r["tokens_per_s"], ".0f"),
            _fmt(r["load_avg_1m"], ".1f"),
            "-" if r["speedup_vs_trl"] is None else f"{r['speedup_vs_trl']:.2f}x",
        )
    console = Console(width=None if sys.stdout.isatty() else 160)  # no truncated columns in logs / pipes
    console.print(table)
    fd = next((r for r in rows if r["framework"] == "fastdapo"), None)
    if fd and fd.get("median_train_s") is not None:
        console.print(
            f"fastdapo stages (median s): rollout+reward {_fmt(fd['median_rollout_s'])}, "
            f"old log-probs {_fmt(fd.get('median_old_logprobs_s'))}, train {_fmt(fd['median_train_s'])}"
        )
    for p in _write_outputs(rows, per_step, out, title):
        console.print(f"wrote {p}")


if __name__ == "__main__":
    e2e_command()
