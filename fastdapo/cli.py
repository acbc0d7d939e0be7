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
def train(config: str | None, overrides: tuple[str, ...]) -> None:
    """Train with DAPO. Without CONFIG: the built-in toy run on CPU (tiny model, no downloads).

    Writes RUN_DIR/config.yaml, RUN_DIR/metrics.jsonl and RUN_DIR/checkpoints/.
    """
    try:
        cfg = load_config(config, list(overrides))
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    _prepare_env()
    from fastdapo.training.trainer import train as run_training

    result = run_training(cfg)
    if result.get("acc_before") is not None and result.get("acc_after") is not None:
        click.echo(f"accuracy before -> after: {result['acc_before']:.3f} -> {result['acc_after']:.3f}")


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
    _attach_optional(main, "fastdapo.evaluation.cli", "eval_command")
    _attach_optional(main, "fastdapo.launch", "launch_command")


_attach_all()

if __name__ == "__main__":
    sys.exit(main())
