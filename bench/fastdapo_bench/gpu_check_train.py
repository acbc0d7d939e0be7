"""GPU check part (c): the product itself, `fastdapo train` on the toy task, run as a subprocess.

The plan (gpu_check_train_plan) says what runs and what was left out; the verdicts
(gpu_check_train_verdicts) judge each run from its exit code and metrics.jsonl alone.  With 2+ GPUs
visible the same settings also run through `fastdapo launch --num-procs 2` under ZeRO-3.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from .gpu_check_common import Budget, OutOfTime, PartResult, child_env, has_module, log_tail, md_table, run_logged
from .gpu_check_train_plan import TrainRun, plan_train
from .gpu_check_train_verdicts import read_steps, run_verdicts

# What `fastdapo train` imports on its way to the first step (module -> distribution to carry).
REQUIRED = {
    "deepspeed": "deepspeed",
    "click": "click",
    "rich": "rich",
    "yaml": "pyyaml",
    "transformers": "transformers",
}
SHOWN = ("loss", "grad_norm", "reward/mean", "filter/kept_groups", "train/updates", "rollout_corr/logp_abs_diff_max")
LAUNCH_MIN_S = 60  # seconds of budget the 2-process run needs to be worth starting


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def _gpus(device) -> int:
    import torch

    return torch.cuda.device_count() if device.type == "cuda" else 0


def run_train_check(result: PartResult, device, budget: Budget, cpu: bool, out: Path, extra=()):
    missing = [f"{module} ({dist})" for module, dist in REQUIRED.items() if not has_module(module)]
    if missing:
        why = f"fastdapo train cannot start here: not importable: {', '.join(missing)}"
        result.add("fastdapo train", "importable", False, ok=False, detail=why)
        result.lines += [why + ". Carry them as wheels: `make gpu-check-wheels` (README, GPU check)."]
        result.summary.append(f"FAIL: {why}")
        return
    plan = plan_train(device.type == "cuda", _gpus(device), out, list(extra))
    env, env_notes = child_env(cpu)
    notes = plan.notes + env_notes
    result.lines += ["Settings (every one explicit; the rest are configs/toy.yaml's):", ""]
    result.lines += [f"- `{k}={v}`" for k, v in plan.settings.items()]
    result.lines += ["", "Left out, and why:" if notes else "Nothing left out.", *(f"- {n}" for n in notes)]
    result.summary += [f"note: {n}" for n in notes]
    for run in plan.runs:
        if run.name.startswith("launch") and budget.left() < LAUNCH_MIN_S:
            why = f"only {budget.left():.0f} s of the budget left for the 2-process launch"
            result.add(run.name, "started", False, ok=False, detail=why)
            result.summary.append(f"FAIL: {run.name}: not started: {why}")
            continue
        if budget.left() < 0:
            raise OutOfTime(f"stopped before the {run.name} run")
        _one_run(result, run, env, budget, out)


def _one_run(result: PartResult, run: TrainRun, env: dict, budget: Budget, out: Path):
    if run.run_dir.resolve().is_relative_to(out.resolve()):
        shutil.rmtree(run.run_dir, ignore_errors=True)  # the check's own directory: a fresh run, nothing stale
    log = out / f"{run.name}.log"
    started = time.time()
    print(f"  running: {run.shell()}", flush=True)
    code, seconds = run_logged(run.command, env, log, budget.left())
    rows, why_empty = read_steps(run.run_dir / "metrics.jsonl", since=started)
    verdicts = run_verdicts(code, seconds, rows, why_empty, run.steps)
    result.lines += ["", f"### `{run.name}`", "", "```", run.shell(), "```", f"Output: {log}", ""]
    for v in verdicts:
        result.add(f"{run.name}: {v.name}", "verdict", "PASS" if v.ok else "FAIL", ok=v.ok, detail=v.detail)
        result.lines.append(f"- **{'PASS' if v.ok else 'FAIL'}** {v.name}: {v.detail}")
    for r in rows:
        for key in SHOWN:
            result.add(f"{run.name} step {r['step']}", key, r.get(key))
    if rows:
        result.lines += ["", *md_table(["step", *SHOWN], [[r["step"], *(_fmt(r.get(k)) for k in SHOWN)] for r in rows])]
    failed = [v for v in verdicts if not v.ok]
    if failed:
        result.lines += ["", f"End of {log.name}:", *log_tail(log)]
    result.summary.append(f"ran ({seconds:.0f} s): {run.shell()}")
    result.summary.append(f"{len(verdicts) - len(failed)}/{len(verdicts)} verdicts pass")
    result.summary += [f"FAIL: {run.name}: {v.name}: {v.detail}" for v in failed]
