"""`fastdapo` command line."""
from __future__ import annotations

import os
import sys

import click

from fastdapo.config import ConfigError, load_config

_SET_HELP = "Override a config value, e.g. --set algorithm.eps_high=0.28 (repeatable)."


def _prepare_env() -> None:
    # DeepSpeed picks its accelerator at import time; without CUDA it must be told to use the CPU.
    try:
        import torch
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
    except ImportError:
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastdapo")
def main() -> None:
    """fastdapo: DAPO reinforcement learning for LLMs (Clip-Higher, Dynamic Sampling,
    token-level loss, overlong reward shaping) with fused Triton kernels and DeepSpeed."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--resume", default=None, metavar="auto|never|PATH",
              help="Continue from the latest checkpoint in RUN_DIR (auto, the default), start over (never), "
                   "or continue from a checkpoint / run directory (PATH). Same as --set run.resume=...")
def train(config: str | None, overrides: tuple[str, ...], resume: str | None) -> None:
    """Train with DAPO. Without CONFIG: the built-in toy run on CPU (tiny model, no downloads).

    Writes RUN_DIR/config.yaml, RUN_DIR/metrics.jsonl, RUN_DIR/samples.jsonl and RUN_DIR/checkpoints/.
    SIGTERM or Ctrl-C stops at the next safe point after saving a checkpoint (exit status 0 after
    SIGTERM, 130 after Ctrl-C; a second Ctrl-C aborts without saving).
    """
    if resume is not None:
        overrides = overrides + (f"run.resume={resume}",)
    try:
        cfg = load_config(config, list(overrides))
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    _prepare_env()
    from fastdapo.training.trainer import train as run_training

    result = run_training(cfg)
    if result.get("acc_before") is not None and result.get("acc_after") is not None:
        click.echo(f"accuracy before -> after: {result['acc_before']:.3f} -> {result['acc_after']:.3f}")
    if result.get("stopped_by"):
        from fastdapo.runtime.signals import EXIT_CODES

        click.echo(f"stopped by {result['stopped_by']}; resume with: fastdapo train ... --resume auto", err=True)
        sys.exit(EXIT_CODES.get(result["stopped_by"], 0))


@main.group()
def bench() -> None:
    """Benchmarks (kernels, packing, end-to-end step time)."""


def _attach_optional(group, module: str, attr: str) -> None:
    try:
        mod = __import__(module, fromlist=[attr])
        group.add_command(getattr(mod, attr))
    except (ImportError, AttributeError):
        pass


def _attach_all() -> None:
    _attach_optional(bench, "bench.kernels", "kernels_command")
    _attach_optional(bench, "bench.packing", "packing_command")
    _attach_optional(bench, "bench.e2e", "e2e_command")
    _attach_optional(bench, "bench.reward_fidelity", "reward_fidelity_command")
    _attach_optional(main, "fastdapo.evaluation.cli", "eval_command")
    _attach_optional(main, "fastdapo.observability.plot", "plot_command")
    _attach_optional(main, "fastdapo.export", "export_command")
    _attach_optional(main, "fastdapo.launch", "launch_command")


_attach_all()

if __name__ == "__main__":
    sys.exit(main())
