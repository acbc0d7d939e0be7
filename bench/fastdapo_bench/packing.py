"""Packing benchmark: update-pass throughput with padded vs packed micro-batches.

One "update pass" = forward of a tiny random Qwen2 backbone + LM head over every micro-batch, a token-sum
log-prob loss on the scored tokens, and backward. Sequence lengths follow a skewed (log-normal) law with
a few sequences at the cap, as RL rollouts do: most responses are short, a few run to the limit.

Layouts compared (same sequences, same token budget per micro-batch):
  padded         the packing plan (balanced micro-batches), each micro-batch a [B, Lmax] right-padded batch
  padded-sorted  length-sorted micro-batches (similar lengths together), [B, Lmax] with B * Lmax <= budget
  packed         the packing plan, one [1, T] row per micro-batch with a block-diagonal causal mask (SDPA)
  packed-varlen  the same rows, attention run per sequence (no T x T mask; fastdapo.packing.attention)
  packed-shared  groups of ``--group-size`` sequences share their prompt, computed once per micro-batch
                 (fastdapo.packing.shared_prompt; the trainer's default layout)

Timings use one CPU thread by default (``--threads``): on a machine shared with other jobs,
multi-threaded CPU kernels lose most of their time waiting on each other and the numbers swing by
several times between runs. Throughput is real (unpadded) tokens per second of the best of
``--repeats`` timed passes, after one warm-up micro-batch per layout; layouts are interleaved so that
load from other processes affects them alike.

Run: ``python -m fastdapo_bench.packing`` or ``fastdapo bench packing``; writes ``packing.csv`` and ``packing.md``
to ``--out-dir``.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from pathlib import Path

import click
import torch

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.attention import register_attention
from fastdapo.packing.layouts import MicroBatch
from fastdapo.packing.packed import (
    make_micro_batches,
    make_padded_micro_batches,
    padding_fraction,
    plan_micro_batches,
)
from fastdapo.packing.shared_prompt import make_shared_micro_batches

from .machine import provenance

__all__ = ["packing_command", "run_packing_bench", "skewed_lengths"]


def skewed_lengths(
    n: int, cap: int, *, median: float, sigma: float = 1.0, n_at_cap: int = 3, min_len: int = 8, seed: int = 0
) -> list[int]:
    """Log-normal lengths clipped to ``[min_len, cap]``, with ``n_at_cap`` sequences exactly at the cap."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.exp(math.log(median) + sigma * torch.randn(n, generator=g))
    lengths = raw.round().clamp(min_len, cap).long().tolist()
    for i in torch.randperm(n, generator=g)[:n_at_cap].tolist():
        lengths[i] = cap
    return lengths


PROMPT_LEN = 16


def _sequences(lengths: list[int], vocab: int, seed: int, group_size: int) -> list[Sequence]:
    """Consecutive runs of ``group_size`` sequences are one group: one prompt, different responses."""
    g = torch.Generator().manual_seed(seed + 1)
    seqs = []
    for i, n in enumerate(lengths):
        if i % group_size == 0:
            prompt = torch.randint(0, vocab, (PROMPT_LEN,), generator=g)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[PROMPT_LEN - 1 : n - 1] = True  # positions predicting response tokens
        ids = torch.cat([prompt, torch.randint(0, vocab, (n - PROMPT_LEN,), generator=g)])
        seqs.append(Sequence(input_ids=ids, loss_mask=mask, prompt_len=PROMPT_LEN, group=i // group_size))
    return seqs


def _sorted_plan(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Length-grouped plan for the padded baseline: longest first, a micro-batch grows while B * Lmax fits."""
    plan: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if plan and (len(plan[-1]) + 1) * lengths[plan[-1][0]] <= max_tokens:
            plan[-1].append(i)
        else:
            plan.append([i])
    return plan


def _tiny_qwen2(hidden: int, layers: int, vocab: int, max_len: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    heads = max(hidden // 64, 1)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(heads // 2, 1),
        max_position_embeddings=max_len,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(cfg).float().train()


def _update_pass(model, mbs: list[MicroBatch]) -> None:
    model.zero_grad(set_to_none=True)
    for mb in mbs:
        hidden = model.model(**mb.backbone_kwargs()).last_hidden_state
        hidden = mb.scored_hidden(hidden.reshape(-1, hidden.shape[-1]))[mb.loss_mask]
        logits = model.lm_head(hidden)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, mb.targets[mb.loss_mask][:, None])
        logp.sum().backward()


def run_packing_bench(
    *,
    num_seqs: int = 64,
    cap: int = 512,
    median: float = 48.0,
    max_tokens: int = 1024,
    hidden: int = 256,
    layers: int = 4,
    vocab: int = 2048,
    repeats: int = 3,
    group_size: int = 8,
    seed: int = 0,
) -> list[dict]:
    lengths = skewed_lengths(num_seqs, cap, median=median, min_len=PROMPT_LEN + 1, seed=seed)
    seqs = _sequences(lengths, vocab, seed, group_size)
    model = _tiny_qwen2(hidden, layers, vocab, cap)
    varlen = register_attention()
    plan = plan_micro_batches(lengths, max_tokens)
    layouts = {  # name -> (micro-batches, attention implementation of the model)
        "padded": (make_padded_micro_batches(seqs, max_tokens, plan=plan), "sdpa"),
        "padded-sorted": (make_padded_micro_batches(seqs, max_tokens, plan=_sorted_plan(lengths, max_tokens)), "sdpa"),
        "packed": (make_micro_batches(seqs, max_tokens), "sdpa"),
        "packed-varlen": (make_micro_batches(seqs, max_tokens, attn_impl="packed_sdpa"), varlen),
        "packed-shared": (make_shared_micro_batches(seqs, max_tokens, attn_impl="packed_sdpa"), varlen),
    }
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for mbs, impl in layouts.values():  # warm-up
        model.set_attn_implementation(impl)
        _update_pass(model, mbs[:1])
    for _ in range(repeats):  # rounds interleave the layouts so that load drift hits all alike
        for name, (mbs, impl) in layouts.items():
            model.set_attn_implementation(impl)
            t0 = time.perf_counter()
            _update_pass(model, mbs)
            times[name].append(time.perf_counter() - t0)
    real = sum(lengths)
    rows = []
    for name, (mbs, impl) in layouts.items():
        best, med = min(times[name]), statistics.median(times[name])
        rows.append(
            {
                "layout": name,
                "attention": impl,
                "micro_batches": len(mbs),
                "real_tokens": real,
                "computed_tokens": sum(mb.input_ids.numel() for mb in mbs),
                "padding_fraction": round(padding_fraction(mbs), 4),
                "seconds_best": round(best, 4),
                "seconds_median": round(med, 4),
                "tokens_per_s": round(real / best, 1),
            }
        )
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_padded"] = round(r["tokens_per_s"] / base, 3)
    info = {
        "num_seqs": num_seqs,
        "mean_len": round(real / num_seqs, 1),
        "max_len": max(lengths),
        "max_over_mean": round(max(lengths) * num_seqs / real, 2),
        "max_tokens": max_tokens,
        "group_size": group_size,
        "prompt_len": PROMPT_LEN,
        "hidden": hidden,
        "layers": layers,
        "vocab": vocab,
        "threads": torch.get_num_threads(),
    }
    for r in rows:
        r.update(info)
    return rows


@click.command("packing")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where packing.csv and packing.md are written.",
)
@click.option("--num-seqs", default=64, show_default=True)
@click.option("--cap", default=512, show_default=True, help="Maximum sequence length.")
@click.option("--median", default=48.0, show_default=True, help="Median of the log-normal length law.")
@click.option("--max-tokens", default=1024, show_default=True, help="Token budget per micro-batch.")
@click.option("--hidden", default=256, show_default=True)
@click.option("--layers", default=4, show_default=True)
@click.option("--vocab", default=2048, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Timed passes per layout (best is reported).")
@click.option("--group-size", default=8, show_default=True, help="Sequences per prompt (shared-prompt layout).")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    help="torch CPU threads; 1 keeps timings stable on a shared machine (0 = torch default).",
)
def packing_command(out_dir: Path, threads: int, **kwargs) -> None:
    """Update-pass tokens/s: padded vs packed micro-batches on a skewed length distribution (CPU)."""
    from rich.console import Console
    from rich.table import Table

    if threads > 0:
        torch.set_num_threads(threads)
    rows = run_packing_bench(**kwargs)
    info = rows[0]
    console = Console()
    table = Table(
        title=(
            f"packing: {info['num_seqs']} seqs, mean len {info['mean_len']}, max {info['max_len']} "
            f"(max/mean {info['max_over_mean']}), budget {info['max_tokens']} tokens, "
            f"Qwen2 h={info['hidden']} L={info['layers']} V={info['vocab']}, {info['threads']} threads"
        )
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "layout" else "right")
    for r in rows:
        table.add_row(*_cells(r))
    console.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "packing.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "packing.md").write_text(markdown(rows, table.title) + "\n".join(provenance()) + "\n")
    console.print(f"wrote {path} and {out_dir / 'packing.md'}")


COLUMNS = ("layout", "micro-batches", "computed tokens", "padding", "best s", "median s", "tokens/s", "vs padded")


def _cells(r: dict) -> list[str]:
    """One row's COLUMNS, formatted alike for the console table and the markdown."""
    return [r["layout"], str(r["micro_batches"]), str(r["computed_tokens"]), f"{r['padding_fraction']:.1%}",
            f"{r['seconds_best']:.3f}", f"{r['seconds_median']:.3f}", f"{r['tokens_per_s']:.0f}",
            f"{r['speedup_vs_padded']:.2f}x"]  # fmt: skip


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    packing_command()
