"""`fastdapo launch`: multi-process / multi-node training through DeepSpeed's launcher.

Three modes, all ending in DeepSpeed's per-node launcher, which starts one process per rank,
sets RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* and, when one rank dies, stops the others:
  * one node:        --num-procs N
  * ssh/pdsh:        --hostfile FILE   (DeepSpeed's runner starts the per-node launchers)
  * per node:        --nnodes K --node-rank R --master-addr A (Slurm, Kubernetes: each node runs this)
In the first and last modes it runs through `fastdapo.launch_node`, which records how each rank ended,
so a failure names the rank that failed first (see `fastdapo.launch_report`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from fastdapo.launch_report import failure_lines

TRAIN = ["--module", "fastdapo.cli", "train"]


def _world_info(nnodes: int, procs_per_node: int, slots: list[int] | None = None) -> str:
    info = {f"node{i}": list(slots or range(procs_per_node)) for i in range(nnodes)}
    return base64.urlsafe_b64encode(json.dumps(info).encode()).decode()


def build_commands(
    train_args: list[str],
    *,
    num_procs: int,
    hostfile: str | None = None,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    report_file: str | None = None,
    rank_log_dir: str | None = None,
    slots: list[int] | None = None,
) -> list[list[str]]:
    """The exact commands to run on this machine (one per node in per-node mode, so one here).
    `report_file` / `rank_log_dir`: where the per-node launcher writes how each rank ended / their output.
    `slots`: the GPU ids of a node's ranks (default 0..num_procs-1)."""
    if hostfile:
        return [
            [
                "deepspeed",
                "--hostfile",
                hostfile,
                "--master_addr",
                master_addr,
                "--master_port",
                str(master_port),
                "--no_local_rank",
                *TRAIN,
                *train_args,
            ]
        ]
    if not 0 <= node_rank < nnodes:
        raise click.UsageError(f"--node-rank {node_rank} must be in [0, {nnodes})")
    return [
        [
            sys.executable,
            "-u",
            "-m",
            "fastdapo.launch_node",
            *([f"--report_file={report_file}"] if report_file else []),
            *([f"--rank_log_dir={rank_log_dir}"] if rank_log_dir else []),
            f"--world_info={_world_info(nnodes, num_procs, slots)}",
            f"--node_rank={node_rank}",
            f"--master_addr={master_addr}",
            f"--master_port={master_port}",
            "--no_local_rank",
            *TRAIN,
            *train_args,
        ]
    ]


def launch_env() -> dict:
    from fastdapo.rollout.generator_layout import NODE_GPUS, visible_gpus

    env = dict(os.environ)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        env.setdefault("DS_ACCELERATOR", "cpu")  # gloo is then picked by the trainer
    else:  # the ranks see only their own GPUs; a rank's rollout generator takes one of the rest
        env.setdefault(NODE_GPUS, ",".join(visible_gpus(env, torch.cuda.device_count())))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run_forwarding_signals(cmd: list[str], env: dict) -> int:
    """Run the launcher; SIGTERM/SIGINT reach it (and through it every rank, which saves and exits)."""
    import signal

    child = subprocess.Popen(cmd, env=env)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command("launch", context_settings={"ignore_unknown_options": False})
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option(
    "--num-procs",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes per node: one per trainer GPU on CUDA (rollout.max_staleness >= 1 takes as many GPUs again).",
)
@click.option(
    "--hostfile",
    type=click.Path(exists=True, dir_okay=False),
    help="DeepSpeed hostfile ('host slots=N' lines): ssh/pdsh multi-node.",
)
@click.option(
    "--nnodes", default=1, show_default=True, type=click.IntRange(1), help="Nodes in per-node mode (Slurm/Kubernetes)."
)
@click.option(
    "--node-rank", default=0, show_default=True, type=click.IntRange(0), help="This node's rank in per-node mode."
)
@click.option("--master-addr", default="127.0.0.1", show_default=True, help="Address of node 0.")
@click.option("--master-port", default=29500, show_default=True, type=click.IntRange(1, 65535))
@click.option("--dry-run", is_flag=True, help="Print the exact commands and exit.")
def launch_command(config, overrides, num_procs, hostfile, nnodes, node_rank, master_addr, master_port, dry_run):
    """Run `fastdapo train CONFIG` on several processes / nodes (DeepSpeed launcher).

    \b
    One node, 8 GPUs:    fastdapo launch --num-procs 8 configs/qwen2.5-7b-8xh100.yaml
    ssh/pdsh nodes:      fastdapo launch --hostfile hostfile configs/dapo-qwen2.5-32b.yaml
    Slurm (every node):  fastdapo launch --nnodes $SLURM_NNODES --node-rank $SLURM_NODEID \\
                           --master-addr $MASTER_ADDR --num-procs 8 CONFIG
    """
    from fastdapo.config import ConfigError, load_config
    from fastdapo.rollout.generator_layout import NODE_GPUS, node_gpus, trainer_slots
    from fastdapo.runtime.run_lock import RunDirError, check_run_dir_free
    from fastdapo.runtime.sequence_parallel import SequenceParallelError, check_size

    train_args = ([config] if config else []) + [a for o in overrides for a in ("--set", o)]
    try:
        cfg = load_config(config, list(overrides))  # fail here, once, rather than in every rank
        # A directory in use (or unusable) is refused before any rank starts; only on the node of rank 0, which
        # takes the lock: another node's launcher may start after the run holds it.
        if not dry_run and node_rank == 0:
            check_run_dir_free(Path(cfg.run.output_dir))
        if not hostfile:  # (a hostfile's slots are counted by DeepSpeed's runner: the ranks check then)
            check_size(cfg.distributed.sequence_parallel_size, nnodes * num_procs)
    except (ConfigError, RunDirError, SequenceParallelError) as e:
        raise click.ClickException(str(e)) from None
    env = launch_env()
    report = None if dry_run or hostfile else tempfile.NamedTemporaryFile(prefix="fastdapo-launch-", suffix=".json")
    cmds = build_commands(
        train_args,
        num_procs=num_procs,
        hostfile=hostfile,
        nnodes=nnodes,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
        report_file=report.name if report else None,
        rank_log_dir=str(Path(cfg.run.output_dir) / "logs") if report else None,
        slots=trainer_slots(node_gpus(env, 0), num_procs) if NODE_GPUS in env else None,
    )
    for cmd in cmds:
        prefix = " ".join(f"{k}={env[k]}" for k in ("DS_ACCELERATOR",) if k in env)
        click.echo(f"{prefix + ' ' if prefix else ''}{shlex.join(cmd)}")
    if dry_run:
        return
    with report or contextlib.nullcontext():
        code = _run_forwarding_signals(cmds[0], env)
        records = _read_records(report.name) if report else []
    if code != 0:
        lines, closing = failure_lines(records, code, nodes=nnodes)
        for line in lines:
            click.echo(line, err=True)
        raise click.ClickException(closing)


def _read_records(path: str) -> list[dict]:
    try:
        return json.loads(Path(path).read_text() or "[]")
    except (OSError, ValueError):  # the node launcher was itself killed before writing them
        return []
