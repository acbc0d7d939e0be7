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

fastdapo can run in several variants in one invocation (``--fastdapo-variants sync,async1``): ``sync`` is
the synchronous loop (row ``fastdapo``); ``asyncK`` sets ``rollout.max_staleness=K`` (row
``fastdapo-asyncK``): a generator process samples while the actor trains, and the same thread budget is
split between them (``--generator-threads`` for the generator, the rest for the trainer). For every
fastdapo row the overlap of generation and the actor's work is reported: ``gen`` is the time spent
generating the step's samples (sync: ``time/rollout``; async: the generator's own ``async/generate_s``),
``actor`` is the step minus the actor's wait for samples (``time/rollout``), and over the means of the
timed steps ``overlap = (gen + actor - step) / min(gen, actor)`` (0 = serial, 1 = the shorter one fully
hidden) and ``step / max(gen, actor)`` (1 = the step takes no longer than the longer of the two).

Run: ``python -m fastdapo_bench.e2e`` or ``fastdapo bench e2e``; writes ``e2e.csv``, ``e2e.md`` and
``e2e_steps.csv`` to ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .e2e_report import report
from .e2e_summary import summarize

__all__ = ["e2e_command", "run_e2e", "summarize", "toy_prompt_rows", "default_model_dir", "parse_variants"]

FRAMEWORKS = ("fastdapo", "trl")
MODELS = ("toy", "3M", "30M")  # the built-in warm-started toy model, or a random-init Qwen2 of bench rollout
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


def parse_variants(text: str) -> list[int]:
    """``sync,async1`` -> [0, 1]: the rollout.max_staleness of each fastdapo variant, in order."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part == "sync":
            k = 0
        elif part.startswith("async") and part[5:].isdigit() and int(part[5:]) >= 1:
            k = int(part[5:])
        else:
            raise click.BadParameter(f"unknown fastdapo variant {part!r} (sync, or asyncK with K >= 1: async1, async2)")
        if k in out:
            raise click.BadParameter(f"fastdapo variant {part!r} given twice")
        out.append(k)
    if not out:
        raise click.BadParameter("no fastdapo variant given")
    return out


def variant_name(max_staleness: int) -> str:
    return "fastdapo" if max_staleness == 0 else f"fastdapo-async{max_staleness}"


# ---- harness ----


def _run_worker(name: str, framework: str, spec: dict, timeout_s: float | None) -> dict:
    """``name`` is the run (a fastdapo variant or trl), ``framework`` the worker module that runs it."""
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work / f"{name}.spec.json", work / f"{name}.result.json"
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
    log_path = work / f"{name}.log"
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
        raise click.ClickException(f"{name} run failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return json.loads(result_path.read_text())


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
    fastdapo_variants: str | list[int] = "sync",
    generator_threads: int | None = None,
    model: str = "toy",
    fastdapo_sets=(),
    work_dir: Path | None = None,
    timeout_s: float | None = None,
) -> tuple[list[dict], list[dict]]:
    """Runs every framework (every fastdapo variant) ``rounds`` times; returns (summary rows, per-step rows).

    ``fastdapo_variants``: "sync,async1" or a list of rollout.max_staleness values (0 = synchronous).
    Every run gets ``threads`` threads in all; an asynchronous one gives ``generator_threads`` of them
    (default half) to its generator process and the rest to the trainer."""
    if threads < 1:
        raise click.BadParameter("--threads must be >= 1 (the same explicit count for both frameworks)")
    if rounds < 1 or steps < 1:
        raise click.BadParameter("--rounds and --steps must be >= 1")
    staleness = parse_variants(fastdapo_variants) if isinstance(fastdapo_variants, str) else list(fastdapo_variants)
    if "fastdapo" not in frameworks:
        staleness = []
    gen_threads = generator_threads if generator_threads is not None else max(1, threads // 2)
    if any(staleness) and not 1 <= gen_threads < threads:
        raise click.BadParameter(
            f"an async fastdapo variant splits --threads between its generator and its trainer: needs --threads >= 2 "
            f"and 1 <= --generator-threads < --threads (got {threads} and {gen_threads})"
        )
    if model_dir and model != "toy":
        raise click.BadParameter("give --model or --model-dir, not both")
    # Run dirs and logs go to a temporary folder, removed after a successful run (kept on failure).
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="fastdapo-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    if model_dir:
        model_dir = Path(model_dir).resolve()
    elif model == "toy":
        model_dir = default_model_dir()
    else:  # a random-init Qwen2 with the character tokenizer, as in bench rollout
        from fastdapo_bench.rollout import _model_dir

        model_dir = _model_dir(model, work / "models").resolve()
    runs = []  # (row name, worker, max_staleness) in --framework order, fastdapo's variants in their order
    for fw in dict.fromkeys(frameworks):
        runs += [(variant_name(k), fw, k) for k in staleness] if fw == "fastdapo" else [(fw, fw, None)]
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
    merged = {name: {"framework": name, "runs": [], "loads": []} for name, _, _ in runs}
    per_step = []
    for rnd in range(rounds):  # rounds alternate the order so that drifting machine load hits all alike
        for name, fw, k in runs if rnd % 2 == 0 else tuple(reversed(runs)):
            run_spec = {**spec, "work_dir": str(work / f"round{rnd + 1}"), "run_name": name}
            if k:  # asynchronous rollouts: the generator gets gen_threads of the budget, the trainer the rest
                run_spec.update(max_staleness=k, generator_threads=gen_threads, trainer_threads=threads - gen_threads)
                run_spec["extra_sets"] = [
                    *spec["extra_sets"],
                    f"rollout.max_staleness={k}",
                    f"rollout.generator_threads={gen_threads}",
                ]
            load_before = os.getloadavg()[0]
            result = _run_worker(name, fw, run_spec, timeout_s)
            m = merged[name]
            m["runs"].append(result["steps"])
            m["loads"].append((load_before + os.getloadavg()[0]) / 2)
            for key in ("threads", "max_staleness", "trainer_threads", "generator_threads"):
                if key in result:
                    m[key] = result[key]
            per_step += [
                {"framework": name, "round": rnd + 1, **{k.replace("/", "_"): v for k, v in s.items()}}
                for s in result["steps"]
            ]
    rows = []
    for m in merged.values():
        row = summarize(m, spec)
        row["load_avg_1m"] = round(statistics.mean(m["loads"]), 2)
        rows.append(row)
    if not work_dir:
        shutil.rmtree(work, ignore_errors=True)
    for key, base_name in (("speedup_vs_sync", "fastdapo"), ("speedup_vs_trl", "trl")):
        base = next((r["median_step_s"] for r in rows if r["framework"] == base_name), None)
        for r in rows:
            r[key] = round(base / r["median_step_s"], 3) if base and r["median_step_s"] else None
    return rows, per_step


@click.command("e2e")
@click.option("--prompts", default=16, show_default=True, help="Prompts per step (fastdapo train_batch_size).")
@click.option("--group-size", default=8, show_default=True, help="Responses per prompt G.")
@click.option("--max-new-tokens", default=24, show_default=True, help="Maximum completion length L.")
@click.option("--steps", default=5, show_default=True, help="Steps per framework; the first is a warm-up.")
@click.option(
    "--threads",
    default=1,
    show_default=True,
    help="torch CPU threads for EVERY run (OMP_NUM_THREADS and torch.set_num_threads); an async fastdapo "
    "variant splits them between its generator and its trainer.",
)
@click.option(
    "--fastdapo-variants",
    default="sync",
    show_default=True,
    help="Comma-separated fastdapo runs: sync (row fastdapo) and/or asyncK = rollout.max_staleness=K "
    "(row fastdapo-asyncK), e.g. sync,async1.",
)
@click.option(
    "--generator-threads",
    type=int,
    default=None,
    help="Async variants: threads of the generator process out of --threads (the trainer gets the rest) "
    "[default: half of --threads].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where e2e.csv, e2e.md and e2e_steps.csv are written.",
)
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="toy",
    show_default=True,
    help="toy = the built-in warm-started toy model; 3M / 30M = a random-init Qwen2 of that size (as in "
    "bench rollout), built in the run's temporary folder.",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Local Hugging Face model dir (instead of --model).",
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
    """End-to-end DAPO step time: fastdapo (sync and/or async rollouts) vs TRL GRPOTrainer(loss_type="dapo")
    on the same toy shape (CPU)."""
    rows, per_step = run_e2e(**kwargs)
    for p in report(rows, per_step, out, kwargs["threads"]):
        click.echo(f"wrote {p}")


if __name__ == "__main__":
    e2e_command()
