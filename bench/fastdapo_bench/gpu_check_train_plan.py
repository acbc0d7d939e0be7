"""GPU check part (c), the plan: which `fastdapo train` runs, with which settings, and what was left out and why.

Every setting is written out (no "auto"), so the report states exactly what ran and the product refuses,
in one line, a setting this machine cannot honour.  The model is the built-in toy Qwen2 (model.path=toy):
with the toy section at its defaults the product finds its shipped warm start and builds nothing; a toy
model warm-started for only a few steps answers every prompt wrongly, so dynamic sampling keeps no
group and the run applies no update (which the verdicts would then report as a failure).
"""

from __future__ import annotations

import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .gpu_check_common import has_module

# Small enough for seconds per step, large enough for two optimizer updates per step (so the old
# log-probs pass and a ratio != 1 are exercised) and an evaluation before and after.
SIZES = {
    "cuda": {"run.steps": 3, "rollout.n": 8, "algorithm.train_batch_size": 8, "algorithm.gen_batch_size": 16},
    "cpu": {"run.steps": 2, "rollout.n": 4, "algorithm.train_batch_size": 4, "algorithm.gen_batch_size": 8},
}
COMMON = {"rollout.eval_n": 1, "run.eval_every": 0, "run.save_every": 0, "run.resume": "never", "run.progress": False}
LAUNCH_PROCS = 2


@dataclass
class TrainRun:
    """One `fastdapo train` (or `fastdapo launch`) invocation and what its verdicts expect."""

    name: str
    command: list[str]
    run_dir: Path
    steps: int

    def shell(self) -> str:
        return shlex.join(self.command)


@dataclass
class TrainPlan:
    settings: dict[str, str]  # the --set overrides of the single-process run, in order
    notes: list[str] = field(default_factory=list)  # what was skipped or chosen instead, and why
    runs: list[TrainRun] = field(default_factory=list)


def _value(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def machine_settings(cuda: bool, has: Callable[[str], bool] = has_module) -> tuple[dict, list[str]]:
    """The product's fast paths where this machine has them; each one left out comes with its reason."""
    notes = []
    if not cuda:
        notes.append(
            "CPU twin: float32, packed SDPA, Liger off, torch rollout engine; bf16, flash-attention, Liger and "
            "vLLM are what the CUDA run checks (vLLM's start-up alone would outlast the twin)"
        )
        return {
            "run.device": "cpu",
            "model.dtype": "float32",
            "model.attn_implementation": "packed_sdpa",
            "model.use_liger": "off",
            "rollout.engine": "torch",
            "algorithm.kernel_impl": "triton",  # the Triton loss in the interpreter, as the GPU run uses it compiled
        }, notes
    flash, liger, vllm = has("flash_attn"), has("liger_kernel"), has("vllm")
    if not flash:
        notes.append("flash-attn not importable: packed SDPA used (model.attn_implementation=packed_sdpa)")
    if not liger:
        notes.append("liger-kernel not importable: model.use_liger=off")
    if not vllm:
        notes.append("vllm not importable: rollout.engine=torch (the built-in KV-cached sampler)")
    return {
        "run.device": "cuda",
        "model.dtype": "bfloat16",
        "model.attn_implementation": "flash_attention_2" if flash else "packed_sdpa",
        "model.use_liger": "on" if liger else "off",
        "rollout.engine": "vllm" if vllm else "torch",
        "algorithm.kernel_impl": "triton",
    }, notes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sets(settings: dict) -> list[str]:
    return [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]


def _final(settings: dict, extra: list[str]) -> dict:
    """The settings after the caller's own KEY=VALUE overrides (later wins, as in `fastdapo train`)."""
    out = dict(settings)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--train-set {item!r}: expected KEY=VALUE")
        out.pop(key.strip(), None)  # re-inserted last: the command line keeps the caller's order
        out[key.strip()] = value.strip()
    return out


def plan_train(
    cuda: bool,
    gpus: int,
    out: Path,
    extra: list[str] = (),
    has: Callable[[str], bool] = has_module,
    python: str = sys.executable,
) -> TrainPlan:
    """The single-process run, plus 2-process launches when 2+ GPUs are visible: ZeRO-3 data parallel, and one
    sequence-parallel group (distributed.sequence_parallel_size=2)."""
    device_settings, notes = machine_settings(cuda, has)
    base = {
        "run.output_dir": out / "train-run",
        "toy.cache_dir": out / "toy-cache",  # a toy model built (not shipped) lands here, not in the checkout
        **device_settings,
        "distributed.zero_stage": 2,
        **SIZES["cuda" if cuda else "cpu"],
        "algorithm.mini_batch_size": SIZES["cuda" if cuda else "cpu"]["algorithm.train_batch_size"] // 2,
        **COMMON,
    }
    settings = _final({k: _value(v) for k, v in base.items()}, list(extra))
    train = [python, "-m", "fastdapo.cli", "train"]
    plan = TrainPlan(settings=settings, notes=notes)
    plan.runs.append(
        TrainRun("train", train + _sets(settings), Path(settings["run.output_dir"]), int(settings["run.steps"]))
    )
    if cuda and gpus >= LAUNCH_PROCS:
        run_dir = Path(settings["run.output_dir"])
        multi = dict(settings, **{"run.output_dir": str(run_dir.with_name(run_dir.name + "-launch"))})
        multi["distributed.zero_stage"] = "3"
        port = str(free_port())  # not the launcher's fixed default, which a leftover process may hold
        launch = [python, "-m", "fastdapo.cli", "launch", "--num-procs", str(LAUNCH_PROCS), "--master-port", port]
        plan.runs.append(
            TrainRun("launch", launch + _sets(multi), Path(multi["run.output_dir"]), int(multi["run.steps"]))
        )
        # the same two GPUs as one sequence-parallel group: every row split in two (Ulysses over NCCL)
        sp = dict(settings, **{"run.output_dir": str(run_dir.with_name(run_dir.name + "-launch-sp"))})
        sp["distributed.sequence_parallel_size"] = str(LAUNCH_PROCS)
        launch_sp = launch[:-1] + [str(free_port())]
        plan.runs.append(TrainRun("launch-sp", launch_sp + _sets(sp), Path(sp["run.output_dir"]), int(sp["run.steps"])))
    elif cuda:
        notes.append(f"{gpus} CUDA device visible: the {LAUNCH_PROCS}-process ZeRO-3 `fastdapo launch` was not run")
    else:
        notes.append(f"CPU twin: the {LAUNCH_PROCS}-process ZeRO-3 `fastdapo launch` runs only with 2+ GPUs")
    return plan
