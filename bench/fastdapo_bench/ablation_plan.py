"""What `fastdapo bench ablation` runs: the base config, the --quick preset, and one `fastdapo train` per rung x seed.

A run's ``--set`` list is, in order: the --quick preset (if asked), --steps, the bench's own run settings, the
user's ``--set`` pass-through, then the rung's six ladder keys (``ablation_rungs``). The user may not set a key the
rungs own (it would flatten the ladder) nor one the bench owns (seed, output directory, resume); both are
refused in one line before any run starts. Every run's config is validated here too, so a bad key or value
stops the bench before the first (long) run rather than in each of them.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from fastdapo.config import ConfigError, load_config
from fastdapo.config.load import TOY_CHAIN_CONFIG

from .ablation_rungs import LADDER_KEYS, Rung

__all__ = ["DEFAULT_CONFIG", "QUICK", "PlanError", "RunSpec", "plan_runs", "resolve_config"]

DEFAULT_CONFIG = "configs/toy-chain.yaml"  # the long-reasoning toy task the ladder is meant for

# --quick: a CI-sized smoke run of the whole ladder (a few minutes on 2 cores). A tiny toy model whose warm start
# builds in seconds (format noise 0: the tiny model otherwise never answers in the rewarded format, and every
# group is all-wrong), 2 steps of 4 prompts x 4 responses, 2 mini-batches per step (so the ratio leaves 1 and the
# clip fractions are measured), a 32-problem held-out set at 2 samples each.
QUICK: dict[str, object] = {
    "toy.hidden_size": 32,
    "toy.layers": 1,
    "toy.heads": 2,
    "toy.sft_steps": 150,
    "toy.sft_lr": 0.003,
    "toy.sft_format_noise": 0.0,
    "toy.eval_size": 32,
    "rollout.n": 4,
    "rollout.eval_n": 2,
    "algorithm.train_batch_size": 4,
    "algorithm.gen_batch_size": 8,
    "algorithm.mini_batch_size": 2,
    "algorithm.max_num_gen_batches": 2,
    "run.steps": 2,
}
QUICK_SEEDS = 1

# Set by the bench on every run and refused in --set: the run's own directory and seed, and a fresh start (a rerun
# must not continue an older run's checkpoint). It also sets run.progress=false (no live bar in the log file) and
# run.save_every=0 (only metrics are read; `fastdapo train` still saves the final checkpoint), which --set may change.
BENCH_OWNED = ("run.output_dir", "run.seed", "run.resume")


class PlanError(ValueError):
    """A user error found before any run: one line."""


@dataclass(frozen=True)
class RunSpec:
    rung: Rung
    seed: int
    run_dir: Path
    log: Path
    command: list[str]

    @property
    def label(self) -> str:
        return f"{self.rung.name} seed {self.seed}"

    def shell(self) -> str:
        return shlex.join(self.command)


def resolve_config(config: str | None) -> str:
    """The base config path: ``config`` as given (it must exist), else DEFAULT_CONFIG in a checkout, else the
    copy of it the installed package carries."""
    if config is not None:
        if not Path(config).is_file():
            raise PlanError(f"--config {config}: no such file")
        return config
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else str(TOY_CHAIN_CONFIG)


def _value(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def check_user_sets(sets: list[str]) -> None:
    for item in sets:
        key, sep, _ = item.partition("=")
        key = key.strip()
        if not sep:
            raise PlanError(f"--set {item!r}: expected KEY=VALUE")
        if key in LADDER_KEYS:
            raise PlanError(f"--set {key}: set by the ablation rungs (each rung sets it; see --help)")
        if key in BENCH_OWNED:
            what = {"run.seed": "--seeds", "run.output_dir": "--work-dir", "run.resume": "nothing: runs start over"}
            raise PlanError(f"--set {key}: owned by the bench (use {what[key]})")


def plan_runs(
    config: str,
    rungs: list[Rung],
    seeds: int,
    work_dir: Path,
    *,
    quick: bool = False,
    steps: int | None = None,
    user_sets: list[str] = (),
    python: str = sys.executable,
) -> list[RunSpec]:
    """One RunSpec per rung x seed (rung-major: a rung's seeds run together), each config validated."""
    check_user_sets(list(user_sets))
    base = [f"{k}={_value(v)}" for k, v in QUICK.items()] if quick else []
    if steps is not None:
        base.append(f"run.steps={steps}")
    specs = []
    for rung in rungs:
        for seed in range(seeds):
            run_dir = work_dir / rung.name / f"seed{seed}"
            own = [f"run.output_dir={run_dir}", f"run.seed={seed}", "run.resume=never", "run.progress=false",
                   "run.save_every=0"]  # fmt: skip
            sets = [*base, *own, *user_sets, *rung.overrides()]
            try:
                load_config(config, sets, preflight=True)  # as `fastdapo train` checks it, before any run
            except ConfigError as e:
                raise PlanError(f"{rung.name} seed {seed}: {e}") from None
            command = [python, "-m", "fastdapo.cli", "train", config]
            for s in sets:
                command += ["--set", s]
            specs.append(RunSpec(rung, seed, run_dir, work_dir / "logs" / f"{rung.name}-seed{seed}.log", command))
    return specs
