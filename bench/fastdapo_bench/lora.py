"""LoRA vs full fine-tuning: trainable parameters, optimizer state, peak memory and update-step time.

Each (model, mode) runs in a fresh subprocess, so its peak memory is its own: the actor exactly as the
trainer builds it (PolicyWithLoss, DeepSpeed ZeRO-2, one process, fp32 on CPU) takes ``--steps`` DAPO
updates on the same synthetic batch (``--seqs`` sequences of 16 prompt + 48 response tokens).

  trainable         parameters with requires_grad (LoRA: the adapters only)
  optimizer MiB     bytes of every tensor in the optimizer state (Adam moments; ZeRO-2 fp32 partitions)
  peak MiB          on CUDA: torch.cuda.max_memory_allocated; on CPU: peak RSS of the process
                    (ru_maxrss) minus its RSS just before the model was built
  step s            median wall time of one update (forward, backward, optimizer step) after one warm-up

Models: ``toy`` (the toy run's shape: width 128, 2 layers, its character vocabulary; random init) and
``30m`` (width 512, 8 layers, vocabulary 16384: ~27M parameters, random init).

Run: ``python -m fastdapo_bench.lora`` or ``fastdapo bench lora``; writes ``lora.csv`` and ``lora.md`` to ``--out-dir``.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

from .machine import provenance

__all__ = ["lora_command", "measure", "MODELS"]

MODELS = {"toy": dict(vocab=99, hidden=128, layers=2, heads=4), "30m": dict(vocab=16384, hidden=512, layers=8, heads=8)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _sequences(vocab: int, n: int):
    import torch

    from fastdapo.algorithm.sequences import Sequence

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (64,), generator=g)
        mask = torch.zeros(64, dtype=torch.bool)
        mask[15:63] = True
        out.append(Sequence(ids, mask, advantages=torch.full((64,), 1.0 if i % 2 else -1.0), old_logprobs=None))
    return out


def _optimizer_bytes(optimizer) -> int:
    import torch

    seen, total = set(), 0
    for opt in (optimizer, getattr(optimizer, "optimizer", None)):
        for state in (getattr(opt, "state", None) or {}).values():
            for t in state.values() if isinstance(state, dict) else []:
                if isinstance(t, torch.Tensor) and id(t) not in seen and t.numel() > 1:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
    for t in getattr(optimizer, "single_partition_of_fp32_groups", []):  # ZeRO-1/2 master weights
        total += t.numel() * t.element_size()
    return total


def measure(model: str, rank: int, steps: int = 3, seqs: int = 8, alpha: float | None = None) -> dict:
    """One (model, LoRA rank or 0 = full) measurement in this process."""
    import torch

    from fastdapo.actor.actor import Actor
    from fastdapo.actor.ds_engine import build_ds_engine
    from fastdapo.actor.lora import apply_lora
    from fastdapo.actor.policy import LossSettings, PolicyWithLoss
    from fastdapo.config import load_config
    from fastdapo.config.schema import LoraConfig
    from fastdapo.packing.packer import build_packer
    from fastdapo.runtime import distributed as D
    from fastdapo.toy.model import tiny_qwen2

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    D.init_distributed(device, "nccl" if device.type == "cuda" else "gloo")
    m = MODELS[model]
    batch = _sequences(m["vocab"], seqs)
    rss0 = _rss_bytes()
    net = apply_lora(
        tiny_qwen2(m["vocab"], m["hidden"], m["layers"], m["heads"]), LoraConfig(rank=rank, alpha=alpha or 2.0 * rank)
    ).to(device)
    cfg = load_config()
    cfg.distributed.zero_stage = 2
    engine = build_ds_engine(PolicyWithLoss(net, LossSettings(impl="auto")), cfg, torch.float32, device)
    actor = Actor(engine, build_packer(4096, net.config._attn_implementation, False), device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        actor.update(batch, list(range(len(batch))), [[set(range(len(batch)))]])
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    return {
        "model": model,
        "mode": f"lora r={rank}" if rank else "full",
        "params": sum(p.numel() for p in net.parameters()),
        "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "optimizer_mib": round(_optimizer_bytes(engine.optimizer) / 2**20, 2),
        "peak_mib": round(peak / 2**20, 1),
        "step_s": round(statistics.median(times[1:]), 4),
    }


def run_lora_bench(models=("toy", "30m"), rank: int = 16, steps: int = 3, seqs: int = 8) -> list[dict]:
    """Every (model, full / LoRA) pair, each in its own subprocess."""
    rows = []
    # the child imports what this process imports (installed packages, or a checkout's folders on sys.path)
    path = os.pathsep.join(p for p in sys.path if p)
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "PYTHONPATH": path}
    code = "import json, sys, fastdapo_bench.lora as b; a = sys.argv[1:]; "
    code += "print('ROW', json.dumps(b.measure(a[0], *map(int, a[1:]))))"
    for model in models:
        for r in (0, rank):
            argv = [sys.executable, "-c", code, model, str(r), str(steps), str(seqs)]
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"bench lora {model} rank {r} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.split("ROW ", 1)[1].splitlines()[0]))
    return rows


def markdown(rows: list[dict]) -> str:
    out = [
        "| model | mode | params | trainable | optimizer state MiB | peak MiB | step s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['mode']} | {r['params']:,} | {r['trainable']:,} | {r['optimizer_mib']} | "
            f"{r['peak_mib']} | {r['step_s']} |"
        )
    return "\n".join(out)


@click.command("lora")
@click.option("--rank", type=click.IntRange(min=1), default=16, show_default=True, help="LoRA rank (alpha = 2 * rank).")
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Timed update steps.")
@click.option("--seqs", type=click.IntRange(min=1), default=8, show_default=True, help="Sequences per update.")
@click.option("--models", default="toy,30m", show_default=True, help="Comma-separated: toy, 30m.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="bench/results/lora", show_default=True,
              help="Where lora.csv and lora.md are written.")  # fmt: skip
def lora_command(rank: int, steps: int, seqs: int, models: str, out_dir: str) -> None:
    """LoRA vs full fine-tuning, side by side: trainable params, optimizer state, peak memory, step time."""
    names = tuple(m for m in models.split(",") if m)
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise click.BadParameter(
            f"{','.join(unknown) or models!r}: choose from {', '.join(MODELS)}", param_hint="--models"
        )
    rows = run_lora_bench(names, rank, steps, seqs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "lora.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text = markdown(rows)
    notes = [f"LoRA rank {rank} (alpha {2 * rank}) vs full fine-tuning: {steps} timed update(s) of {seqs} sequences "
             "(16 prompt + 48 response tokens), ZeRO-2, one process, fp32.", "", *provenance()]  # fmt: skip
    (out / "lora.md").write_text("\n".join(["# fastdapo bench lora", "", text, "", *notes]) + "\n")
    click.echo(text)
    click.echo(f"wrote {out / 'lora.csv'} and {out / 'lora.md'}")


if __name__ == "__main__":
    lora_command()
