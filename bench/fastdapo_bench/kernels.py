"""Benchmark of the fused linear DAPO loss against full-logits and peer implementations.

    python -m fastdapo_bench.kernels --preset cpu --providers naive,torch,liger
    fastdapo bench kernels --preset gpu --dtype bfloat16

Providers: naive (full logits, PyTorch), compile (torch.compile of naive), liger
(LigerFusedLinearGRPOLoss, loss_type="dapo"), torch (ours, chunked PyTorch), triton (ours, CUDA).
Passes: fwd, bwd, step (fwd+bwd).  Reports the median time and the peak extra memory of each
pass (method in bench/kernel_measure.py) and, for each pass, TFLOP/s against the nominal
2NHV (fwd), 4NHV (bwd) and 6NHV (step) FLOPs.  Note that ours-torch computes the gradient during
the forward (the loss is elementwise in logp), so its fwd carries most of the step's work.
Writes kernels.csv and kernels.md to --out.
"""

from __future__ import annotations

import csv
import gc
from pathlib import Path

import click
import torch

from .kernel_measure import measure_interleaved, pin_malloc_thresholds
from .kernel_providers import GRAD_IN_FORWARD, PROVIDERS, Unavailable
from .kernel_shapes import PRESETS, make_batch, parse_shapes
from .machine import cpu_name, provenance

PASS_FLOPS = {"fwd": 2, "bwd": 4, "step": 6}
FIELDS = [
    "provider",
    "N",
    "H",
    "V",
    "dtype",
    "pass",
    "time_ms",
    "peak_mib",
    "grad_mib",
    "peak_excl_grad_mib",
    "tflops",
    "time_vs_naive",
    "mem_vs_naive",
    "mem_excl_grad_vs_naive",
    "note",
]
# console / markdown columns (the CSV keeps all of FIELDS)
SHORT = {
    "provider": "provider",
    "shape": "N x H x V",
    "pass": "pass",
    "time_ms": "ms",
    "peak_mib": "peak MiB",
    "peak_excl_grad_mib": "peak-grads MiB",
    "tflops": "TFLOP/s",
    "time_vs_naive": "t/naive",
    "mem_vs_naive": "mem/naive",
    "mem_excl_grad_vs_naive": "(mem-grads)/naive",
    "note": "note",
}


def run_benchmark(shapes, providers, passes, dtype, device, reps, warmup, valid_frac, echo=print):
    rows = []
    for n, hdim, vocab in shapes:
        batch = make_batch(n, hdim, vocab, dtype, device, valid_frac)
        loss_fns = {}
        for name in providers:
            try:
                loss_fns[name] = PROVIDERS[name](batch)
            except Unavailable as exc:
                echo(f"skip {name} at {n}x{hdim}x{vocab}: {exc}")
                rows.append(_row(name, batch, dtype, "-", None, None, str(exc)))
        for pass_name in passes:
            results = measure_interleaved(loss_fns, batch, pass_name, reps, warmup)
            for name, res in results.items():
                if isinstance(res, Exception):
                    note = f"failed: {type(res).__name__}: {str(res)[:120]}"
                    rows.append(_row(name, batch, dtype, pass_name, None, None, note))
                    echo(f"{name} {pass_name} {n}x{hdim}x{vocab}: {note}")
                    continue
                seconds, peak, grad_bytes = res
                flops = PASS_FLOPS[pass_name] * n * hdim * vocab
                note = ""
                if name in GRAD_IN_FORWARD and pass_name != "step":
                    note = "gradient computed in fwd"
                    flops = None  # the nominal split of FLOPs between passes does not apply
                rows.append(_row(name, batch, dtype, pass_name, seconds, peak, note, flops, grad_bytes))
                echo(f"{name:8s} {pass_name:4s} {n}x{hdim}x{vocab}: {seconds * 1e3:9.1f} ms {peak / 2**20:9.1f} MiB")
            _free(device)
        del batch, loss_fns
        _free(device)
    _add_ratios(rows)
    return rows


def _free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _row(name, batch, dtype, pass_name, seconds, peak, note, flops=None, grad_bytes=0):
    n, hdim, vocab = batch.shape
    mib = None if peak is None else peak / 2**20
    return {
        "provider": name,
        "N": n,
        "H": hdim,
        "V": vocab,
        "dtype": str(dtype).replace("torch.", ""),
        "pass": pass_name,
        "time_ms": None if seconds is None else round(seconds * 1e3, 2),
        "peak_mib": None if mib is None else round(mib, 1),
        "grad_mib": round(grad_bytes / 2**20, 1),
        # only the step pass allocates dH and dW inside the measured region for every provider
        "peak_excl_grad_mib": (round(mib - grad_bytes / 2**20, 1) if mib is not None and pass_name == "step" else None),
        "tflops": None if seconds is None or flops is None else round(flops / seconds / 1e12, 3),
        "time_vs_naive": None,
        "mem_vs_naive": None,
        "mem_excl_grad_vs_naive": None,
        "note": note,
    }


def _add_ratios(rows):
    naive = {
        (r["N"], r["H"], r["V"], r["pass"]): r for r in rows if r["provider"] == "naive" and r["time_ms"] is not None
    }
    for r in rows:
        base = naive.get((r["N"], r["H"], r["V"], r["pass"]))
        if base is None or r["time_ms"] is None:
            continue
        r["time_vs_naive"] = round(r["time_ms"] / base["time_ms"], 3)
        if base["peak_mib"]:
            r["mem_vs_naive"] = round(r["peak_mib"] / base["peak_mib"], 4)
        if base["peak_excl_grad_mib"] and r["peak_excl_grad_mib"] is not None:
            ratio = r["peak_excl_grad_mib"] / base["peak_excl_grad_mib"]
            r["mem_excl_grad_vs_naive"] = round(ratio, 4)


def write_outputs(rows, out_dir: Path, header: str):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "kernels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [header, "", "| " + " | ".join(SHORT.values()) + " |", "|" + "---|" * len(SHORT)]
    for r in rows:
        lines.append("| " + " | ".join(_cells(r)) + " |")
    lines += ["", *provenance(("liger-kernel", "triton"))]
    (out_dir / "kernels.md").write_text("\n".join(lines) + "\n")


def _cells(r):
    cells = []
    for k in SHORT:
        v = f"{r['N']}x{r['H']}x{r['V']}" if k == "shape" else r[k]
        cells.append("" if v is None else str(v))
    return cells


def print_table(rows, header):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=header)
    for k, label in SHORT.items():
        left = k in ("provider", "pass", "note", "shape")
        table.add_column(label, justify="left" if left else "right", overflow="fold", no_wrap=k != "note")
    for r in rows:
        table.add_row(*_cells(r))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def _device_label(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()}, {torch.get_num_threads()} threads"


@click.command("kernels")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="smoke", show_default=True)
@click.option("--shapes", default=None, help="Override the preset: NxHxV[,NxHxV...]")
@click.option(
    "--providers",
    default="naive,compile,liger,torch,triton",
    show_default=True,
    help="Comma-separated subset of: " + ", ".join(PROVIDERS),
)
@click.option("--passes", default="fwd,bwd,step", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default=None,
    help="Default: bfloat16 on CUDA, float32 on CPU.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--reps", type=int, default=3, show_default=True)
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option(
    "--valid-frac",
    type=float,
    default=1.0,
    show_default=True,
    help="Fraction of tokens in the loss mask (the rest are padding).",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=Path("bench/results/kernels"), show_default=True
)
def kernels_command(preset, shapes, providers, passes, dtype, device, reps, warmup, valid_frac, out_dir):
    """Time and memory of the fused linear DAPO loss vs. full logits, torch.compile and Liger."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    torch_dtype = getattr(torch, dtype or ("bfloat16" if dev.type == "cuda" else "float32"))
    names = [p.strip() for p in providers.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROVIDERS]
    if unknown:
        raise click.BadParameter(f"unknown providers {unknown}; choose from {list(PROVIDERS)}")
    pass_list = [p.strip() for p in passes.split(",") if p.strip()]
    if any(p not in PASS_FLOPS for p in pass_list):
        raise click.BadParameter(f"passes must be among {list(PASS_FLOPS)}")
    if dev.type == "cpu":
        pin_malloc_thresholds()
    shape_list = parse_shapes(shapes) if shapes else PRESETS[preset]
    header = (
        f"fused linear DAPO loss, {_device_label(dev)}, torch {torch.__version__}, "
        f"{torch_dtype}, valid_frac={valid_frac}, median of {reps} (warm-up {warmup})"
    )
    rows = run_benchmark(shape_list, names, pass_list, torch_dtype, dev, reps, warmup, valid_frac, echo=click.echo)
    write_outputs(rows, out_dir, header)
    print_table(rows, header)
    click.echo(f"wrote {out_dir / 'kernels.csv'} and {out_dir / 'kernels.md'}")


if __name__ == "__main__":
    kernels_command()
