"""`fastdapo` command line."""

from __future__ import annotations

import importlib
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


# Commands defined elsewhere, imported on first use so `fastdapo train` does not pay for (or break on)
# another command's imports. Listing them (`--help`) imports each one: a module that cannot load fails
# loudly there, naming itself, instead of its command silently vanishing.
COMMANDS = {
    "check-model": "fastdapo.check_model:check_model_command",
    "eval": "fastdapo.evaluation.cli:eval_command",
    "export": "fastdapo.export:export_command",
    "launch": "fastdapo.launch:launch_command",
    "plot": "fastdapo.observability.plot:plot_command",
}
BENCH_COMMANDS = {
    "ablation": "fastdapo_bench.ablation:ablation_command",
    "e2e": "fastdapo_bench.e2e:e2e_command",
    "kernels": "fastdapo_bench.kernels:kernels_command",
    "lora": "fastdapo_bench.lora:lora_command",
    "packing": "fastdapo_bench.packing:packing_command",
    "reward-fidelity": "fastdapo_bench.reward_fidelity:reward_fidelity_command",
    "rollout": "fastdapo_bench.rollout:rollout_command",
    "sequence-parallel": "fastdapo_bench.sequence_parallel:sequence_parallel_command",
}


def load_command(name: str, target: str) -> click.Command:
    module, attr = target.split(":")
    try:
        command = getattr(importlib.import_module(module), attr)
    except Exception as e:  # any failure: the message names the command and the module
        raise click.ClickException(f"command '{name}' cannot load: {module}: {type(e).__name__}: {e}") from None
    if not isinstance(command, click.Command):
        raise click.ClickException(f"command '{name}': {target} is not a click command")
    return command


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name: str):
        if name in self.lazy and name not in self.commands:
            self.add_command(load_command(name, self.lazy[name]), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastdapo")
def main() -> None:
    """fastdapo: DAPO reinforcement learning for LLMs (Clip-Higher, Dynamic Sampling,
    token-level loss, overlong reward shaping) with fused Triton kernels and DeepSpeed."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option(
    "--resume",
    default=None,
    metavar="auto|never|PATH",
    help="Continue from the latest checkpoint in RUN_DIR (auto, the default), start over (never), "
    "or continue from a checkpoint / run directory (PATH). Same as --set run.resume=...",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print every resolved config value with its source (default, the config file, --set) and exit.",
)
def train(config: str | None, overrides: tuple[str, ...], resume: str | None, dry_run: bool) -> None:
    """Train with DAPO. Without CONFIG: the built-in toy run on CPU (tiny model, no downloads).

    Writes RUN_DIR/config.yaml, RUN_DIR/metrics.jsonl, RUN_DIR/samples.jsonl and RUN_DIR/checkpoints/.
    SIGTERM or Ctrl-C stops at the next safe point after saving a checkpoint (exit status 0 after
    SIGTERM, 130 after Ctrl-C; a second Ctrl-C aborts without saving).
    """
    if resume is not None:
        overrides = overrides + (f"run.resume={resume}",)
    try:
        cfg = load_config(config, list(overrides), preflight=True)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if dry_run:
        from fastdapo.config.provenance import config_sources, format_sources

        click.echo(format_sources(config_sources(cfg, config, list(overrides))))
        return
    _prepare_env()
    from fastdapo.observability.quiet import quiet_libraries

    quiet_libraries()  # before the trainer imports transformers / DeepSpeed
    from fastdapo.actor.output_head import UnsupportedModelError
    from fastdapo.checkpoint.store import CheckpointError
    from fastdapo.data import DatasetError
    from fastdapo.models import TokenizerError
    from fastdapo.rollout.generator_process import GeneratorError
    from fastdapo.runtime.run_lock import RunDirError
    from fastdapo.runtime.sequence_parallel import SequenceParallelError
    from fastdapo.training.trainer import train as run_training

    user_errors = (
        ConfigError,
        DatasetError,
        CheckpointError,
        UnsupportedModelError,
        TokenizerError,
        RunDirError,
        SequenceParallelError,
        GeneratorError,
    )
    try:
        result = run_training(cfg)
    except user_errors as e:  # one line
        raise click.ClickException(str(e)) from None
    if result.get("acc_summary"):
        click.echo(result["acc_summary"])
    if result.get("stopped_by"):
        from fastdapo.runtime.signals import EXIT_CODES

        click.echo(f"stopped by {result['stopped_by']}; resume with: fastdapo train ... --resume auto", err=True)
        sys.exit(EXIT_CODES.get(result["stopped_by"], 0))


@main.group(cls=LazyGroup, lazy=BENCH_COMMANDS)
def bench() -> None:
    """Benchmarks (kernels, packing, end-to-end step time, the DAPO ablation ladder)."""


if __name__ == "__main__":
    sys.exit(main())
