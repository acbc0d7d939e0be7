"""Ulysses sequence parallelism on CPU: one long-row DAPO update with S = 2 ranks (gloo) vs S = 1.

Every run takes the same update: a random Qwen2 (fp32, ``packed_sdpa``, gradient checkpointing off unless asked)
and ``--seqs`` sequences totalling ``--tokens`` tokens packed into ONE row; one forward and backward of the
fused DAPO loss, no warm-up, no optimizer step. S = 2's ranks each compute half of the row, trading sequence
shards for head shards around attention (``fastdapo.actor.ulysses``). Cores: S = 1 runs ``--threads`` torch
threads, S = 2 ``--threads / 2`` per rank; a second S = 1 run at S = 2's threads per rank is a reference for
the time (on small shared machines one process often runs no faster, or slower, on two threads than on one).

Per rank, around the update only (model, batch and process group are built before; freed heap is trimmed):
  peak MiB/rank   peak RSS during forward+backward minus RSS just before it (VmHWM, reset by writing 5 to
                  /proc/self/clear_refs): activations, attention, the loss and the parameter gradients
  abs peak MiB    the process's absolute peak RSS during the update
  time s          wall time of forward+backward, one shot (the ranks start together after a barrier)
A run's figure is its worst rank's; ratios are to the first run. Exactness: S = 2's loss summed over the
group and its group-summed gradients (what DeepSpeed's reduction adds) are compared with S = 1's; a loss
difference above 1e-4 fails the command.

The default shape is the regime sequence parallelism is for, a long row through a small model: 8,192 tokens,
width 256, 4 layers, 4 heads / 2 key-value heads, MLP width 1,024, vocabulary 4,096 (~5M parameters). Its
activations (~150 KiB per token) dwarf the ~19 MiB of gradients, so halving the tokens per rank nearly halves
the update's memory. What does not halve: the gradients (every rank holds all of them), Ulysses' all-to-all
buffers and the row's metadata. With a large model and few tokens the gradients dominate and the ratio goes
towards 1 (ZeRO, not sequence parallelism, answers that case).

Run: ``fastdapo bench sequence-parallel`` (or ``python -m fastdapo_bench.sequence_parallel``); writes
``sequence_parallel.csv`` and ``sequence_parallel.md`` to ``--out-dir``.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

from fastdapo.runtime import distributed as D

from .machine import machine_info, machine_line

__all__ = ["sequence_parallel_command", "run_sequence_parallel_bench"]

MAX_LOSS_DIFF = 1e-4
MIB = 2**20


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


class _PeakRss:
    """Peak RSS over a block: the kernel's high-water mark VmHWM, reset on entry (Linux >= 4.0)."""

    def __enter__(self):
        self.start = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return self

    def __exit__(self, *exc):
        self.peak = _status("VmHWM")


def _sequences(tokens: int, seqs: int, vocab: int):
    import math

    from fastdapo.algorithm.sequences import Sequence

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(seqs):
        n = tokens // seqs + (i < tokens % seqs)
        prompt = max(1, n // 16)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[prompt - 1 : -1] = True
        ids, adv = torch.randint(3, vocab, (n,), generator=g), torch.full((n,), 1.0 if i % 2 == 0 else -1.0)
        # old log-probs near a random model's, so the ratio (and the loss) depends on the model
        old = -math.log(vocab) + 0.3 * torch.randn(n, generator=g)
        out.append(Sequence(ids, mask, advantages=adv, old_logprobs=old, prompt_len=prompt, group=i))
    return out


def _worker(spec: dict) -> dict:
    """One rank of one run (env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); S = WORLD_SIZE."""
    import contextlib
    import ctypes
    import gc

    import torch.distributed as dist
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from fastdapo.actor.policy import LossSettings, PolicyWithLoss
    from fastdapo.actor.ulysses import ulysses_attention
    from fastdapo.packing.attention import register_attention
    from fastdapo.packing.packer import build_packer
    from fastdapo.packing.sequence_shard import shard_micro_batch
    from fastdapo.runtime import sequence_parallel as SP

    torch.set_num_threads(spec["threads"])
    D.init_distributed(torch.device("cpu"), "gloo")
    size = D.world_size()
    SP.init_sequence_parallel(size)
    h, heads = spec["hidden"], spec["heads"]
    cfg = Qwen2Config(
        vocab_size=spec["vocab"], hidden_size=h, intermediate_size=4 * h, num_hidden_layers=spec["layers"],
        num_attention_heads=heads, num_key_value_heads=spec["kv_heads"], max_position_embeddings=spec["tokens"],
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).float()
    model.set_attn_implementation(register_attention())
    if spec["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    SP.check_heads(model.config, size, "the benchmark model")
    seqs = _sequences(spec["tokens"], spec["seqs"], spec["vocab"])
    packer = build_packer(spec["tokens"] + size, register_attention(), False, pad_to_multiple_of=size)
    (mb,) = packer.pack(seqs, packer.plan(seqs), 1)  # one packed row
    policy = PolicyWithLoss(model, LossSettings())
    n_loss = torch.tensor(float(mb.loss_mask.sum()))
    ulysses = ulysses_attention(model, mb.attn_impl, SP.group()) if size > 1 else None
    batch = shard_micro_batch(mb, SP.rank(), size, ulysses) if size > 1 else mb
    del seqs
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back: "before" is what is really held
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    dist.barrier()
    with _PeakRss() as rss:
        start = time.perf_counter()
        loss, _ = policy(batch, normalizer=n_loss)
        loss.backward()
        seconds = time.perf_counter() - start
    total_loss = float(SP.sum_over_group(loss.detach()))
    grads = torch.cat([SP.sum_over_group(p.grad).reshape(-1) for p in model.parameters() if p.grad is not None])
    out = {"row_tokens": mb.input_ids.shape[1], "rank_tokens": batch.input_ids.shape[1],
           "params": sum(p.numel() for p in model.parameters()), "rss_before_mib": rss.start / MIB,
           "update_peak_mib": (rss.peak - rss.start) / MIB, "abs_peak_mib": rss.peak / MIB, "time_s": seconds,
           "loss": total_loss, "grad_norm": float(grads.norm())}  # fmt: skip
    if D.rank() == 0:
        torch.save(grads, spec["save_grads"])
    dist.barrier()
    dist.destroy_process_group()
    return out


def _launch(spec: dict, size: int, timeout: float) -> list[dict]:
    port, procs = str(D._free_port()), []
    bench_dir = str(Path(__file__).resolve().parents[1])
    for r in range(size):
        env = {
            **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(r), "LOCAL_RANK": str(r),
            "WORLD_SIZE": str(size), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": str(spec["threads"]),
            "PYTHONPATH": os.pathsep.join(p for p in (bench_dir, os.environ.get("PYTHONPATH")) if p),
        }  # fmt: skip
        cmd = [sys.executable, "-m", "fastdapo_bench.sequence_parallel", "--worker", json.dumps(spec)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, out) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            raise click.ClickException(f"S={size} rank {r} failed (exit {p.returncode}):\n{out[-3000:]}")
    return [json.loads(out.split("RESULT ", 1)[1].splitlines()[0]) for out in outs]


def run_sequence_parallel_bench(*, tokens=8192, seqs=2, hidden=256, layers=4, heads=4, kv_heads=2, vocab=4096,
                                threads=2, s1_same_threads=True, gradient_checkpointing=False, timeout=1800.0,
                                echo=print) -> list[dict]:  # fmt: skip
    """S = 1 on all ``threads`` cores, S = 1 on S = 2's threads per rank (``s1_same_threads``), then S = 2, each
    in fresh processes; one row per run (the worst rank's figures), ratios against the first."""
    import tempfile

    base = dict(tokens=tokens, seqs=seqs, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab,
                gradient_checkpointing=gradient_checkpointing)  # fmt: skip
    runs = [(1, threads), *([(1, threads // 2)] if s1_same_threads else []), (2, threads // 2)]
    rows, grads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (size, per_rank) in enumerate(runs):
            echo(f"[{i + 1}/{len(runs)}] S={size}: {size} process(es) x {per_rank} thread(s), {tokens} tokens ...")
            start = time.perf_counter()
            spec = {**base, "threads": per_rank, "save_grads": str(Path(tmp) / f"grads{i}.pt")}
            ranks = _launch(spec, size, timeout)
            echo(f"      done in {time.perf_counter() - start:.1f} s (process start included)")
            grads.append(torch.load(spec["save_grads"]))
            worst = {k: max(r[k] for r in ranks) for k in ("update_peak_mib", "abs_peak_mib", "rss_before_mib")}
            rows.append({
                "S": size, "processes": size, "threads_per_rank": per_rank, "tokens": ranks[0]["row_tokens"],
                "tokens_per_rank": ranks[0]["rank_tokens"], "update_peak_mib": round(worst["update_peak_mib"], 1),
                "update_peak_mib_per_rank": "/".join(f"{r['update_peak_mib']:.1f}" for r in ranks),
                "abs_peak_mib": round(worst["abs_peak_mib"], 1), "rss_before_mib": round(worst["rss_before_mib"], 1),
                "time_s": round(max(r["time_s"] for r in ranks), 3), "loss": ranks[0]["loss"],
                "grad_norm": ranks[0]["grad_norm"],
            })  # fmt: skip
    one = rows[0]
    info = {"seqs": seqs, "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads, "vocab": vocab,
            "params": ranks[0]["params"], "gradient_checkpointing": gradient_checkpointing}  # fmt: skip
    info.update(machine_info())
    for r, g in zip(rows, grads):
        r["mem_ratio_vs_s1"] = round(r["update_peak_mib"] / one["update_peak_mib"], 3)
        r["time_ratio_vs_s1"] = round(r["time_s"] / one["time_s"], 3)
        r["loss_diff_vs_s1"] = abs(r["loss"] - one["loss"])
        r["grad_rel_diff_vs_s1"] = float((g - grads[0]).abs().max() / grads[0].abs().max().clamp_min(1e-30))
        r["exact"] = r["loss_diff_vs_s1"] <= MAX_LOSS_DIFF
        r.update(info)
    return rows


COLUMNS = {"S": ("S", "{}"), "procs": ("processes", "{}"), "threads/rank": ("threads_per_rank", "{}"),
           "tokens/rank": ("tokens_per_rank", "{}"), "peak MiB/rank": ("update_peak_mib", "{:.1f}"),
           "mem x": ("mem_ratio_vs_s1", "{:.3f}"), "abs peak MiB": ("abs_peak_mib", "{:.1f}"),
           "time s": ("time_s", "{:.3f}"), "time x": ("time_ratio_vs_s1", "{:.3f}"),
           "loss diff": ("loss_diff_vs_s1", "{:.1e}"), "grad diff": ("grad_rel_diff_vs_s1", "{:.1e}")}  # fmt: skip


def describe(r0: dict) -> str:
    return (
        f"one DAPO update (forward+backward, no warm-up) of {r0['tokens']} tokens in one packed row "
        f"({r0['seqs']} sequences); Qwen2 width {r0['hidden']}, {r0['layers']} layers, {r0['heads']} heads / "
        f"{r0['kv_heads']} KV heads, vocabulary {r0['vocab']} ({r0['params']:,} parameters), fp32, packed_sdpa, "
        f"gradient checkpointing {'on' if r0['gradient_checkpointing'] else 'off'}"
    )


def markdown(rows: list[dict], command: str) -> str:
    r0 = rows[0]
    cells = [list(COLUMNS), *([fmt.format(r[key]) for key, fmt in COLUMNS.values()] for r in rows)]
    table = ["| " + " | ".join(c) + " |" for c in cells]
    table.insert(1, "|" + "---|" * len(COLUMNS))
    return "\n\n".join([
        f"Ulysses sequence parallelism on CPU: {describe(r0)}.",
        "peak MiB/rank: peak RSS of the update minus RSS before it, worst rank; abs peak MiB: absolute peak RSS; "
        "time s: forward+backward wall time, slowest rank; x: ratio to the first row; "
        "diffs: |loss - first row's|, max |grad - first row's| / max |grad|.",
        "\n".join(table),
        machine_line(r0),
        f"Command: `{command}`\n",
    ])  # fmt: skip


@click.command("sequence-parallel")
@click.option("--tokens", type=click.IntRange(min=2), default=8192, show_default=True, help="Tokens in the row.")
@click.option("--seqs", type=click.IntRange(min=1), default=2, show_default=True, help="Sequences in the row.")
@click.option("--hidden", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--heads", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--kv-heads", type=click.IntRange(min=2), default=2, show_default=True, help="Must divide by 2.")
@click.option("--vocab", type=click.IntRange(min=16), default=4096, show_default=True)
@click.option("--threads", type=click.IntRange(min=2), default=2, show_default=True,
              help="Cores for each run: S=1 gets all as torch threads, S=2 half per rank.")  # fmt: skip
@click.option("--s1-same-threads/--no-s1-same-threads", default=True, show_default=True,
              help="Also run S=1 with S=2's threads per rank (a reference for the time).")  # fmt: skip
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=False, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench/results"),
              show_default=True, help="Where sequence_parallel.csv and .md are written.")  # fmt: skip
def sequence_parallel_command(out_dir: Path, **kwargs) -> None:
    """Ulysses sequence parallelism on CPU: peak memory per rank and time of one long-row DAPO update, S=2 vs S=1."""
    ctx, argv = click.get_current_context(), ["fastdapo", "bench", "sequence-parallel"]
    for p in ctx.command.params:  # every option spelled out: the command reproduces the run
        value = ctx.params[p.name]
        argv += [(p.opts if value else p.secondary_opts)[0]] if p.is_flag else [p.opts[0], str(value)]
    command = shlex.join(argv)
    rows = run_sequence_parallel_bench(**kwargs, echo=click.echo)
    click.echo("\n" + markdown(rows, command))
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "sequence_parallel.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "command"])
        writer.writeheader()
        writer.writerows({**r, "command": command} for r in rows)
    (out_dir / "sequence_parallel.md").write_text(markdown(rows, command))
    click.echo(f"wrote {out_dir / 'sequence_parallel.csv'} and {out_dir / 'sequence_parallel.md'}")
    for r in (r for r in rows if not r["exact"]):
        raise click.ClickException(f"S={r['S']} loss off S=1's by {r['loss_diff_vs_s1']:.3e} (> {MAX_LOSS_DIFF:g})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print("RESULT " + json.dumps(_worker(json.loads(sys.argv[2]))), flush=True)
    else:
        sequence_parallel_command()
