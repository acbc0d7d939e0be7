"""GPU check part (b): fused-loss benchmark at the acceptance shape and the four acceptance verdicts.

On the GPU a failing verdict fails the part, so the check exits non-zero (record_verdicts).

Measuring reuses fastdapo_bench.kernel_measure / kernel_shapes / kernel_providers.  Extra memory of a step =
peak allocated during one forward+backward above what was allocated before it (the inputs), minus
the dH and dW buffers every provider must return.  The practical FLOP/s limit is a plain matmul
chain of the same 6*N*H*V FLOPs (logits, dH, dW) measured in the same run.
"""

from __future__ import annotations

import gc
import statistics
import time

import torch

from .gpu_check_common import Budget, OutOfTime, PartResult, kernels_module, md_table

GPU_SHAPE = (16384, 4096, 151936)
CPU_SHAPE = (64, 32, 1000)
PASSES = ("fwd", "bwd", "step")
PASS_FLOPS = {"fwd": 2, "bwd": 4, "step": 6}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_tflops(n, hdim, vocab, dtype, device, reps):
    """TFLOP/s of logits = H W^T, dH = G W, dW = G^T H (6NHV FLOPs), median over ``reps``."""
    torch.manual_seed(7)  # drawn on the device: a CPU draw of the [N, V] operand takes seconds
    h, w, g = (torch.randn(*s, device=device, dtype=dtype) for s in ((n, hdim), (vocab, hdim), (n, vocab)))
    times = []
    for i in range(reps + 1):
        _sync(device)
        t0 = time.perf_counter()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        z = h @ w.t()
        dh = g @ w
        dw = g.t() @ h
        if device.type == "cuda":
            end.record()
            torch.cuda.synchronize(device)
            seconds = start.elapsed_time(end) / 1e3
        else:
            seconds = time.perf_counter() - t0
        del z, dh, dw
        if i:  # the first run is the warm-up
            times.append(seconds)
    del h, w, g
    _free(device)
    return 6 * n * hdim * vocab / statistics.median(times) / 1e12


def _providers(batch):
    """name -> loss closure; providers that cannot run here map to their reason (a str)."""
    from .kernel_providers import EPS_HIGH, EPS_LOW, PROVIDERS, Unavailable

    K = kernels_module()
    out = {}
    for name in ("naive", "torch", "liger"):
        try:
            out[name] = PROVIDERS[name](batch)
        except Unavailable as exc:
            out[name] = str(exc)
    b = batch  # ours on CPU too (Triton interpreter), which the shared provider refuses
    out["triton"] = lambda: K.fused_linear_dapo_loss(
        b.hidden, b.weight, b.targets, b.old_logprobs, b.advantages, b.mask, EPS_LOW, EPS_HIGH, impl="triton"
    )[0]
    return out


def _guarded(fn):
    """measure_interleaved records RuntimeError/MemoryError per provider; make any failure one."""

    def run():
        try:
            return fn()
        except (RuntimeError, MemoryError):
            raise
        except Exception as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc

    return run


def _measure(shape, dtype, device, seeds, reps, warmup, budget):
    """{(provider, pass): (seconds, peak bytes, grad bytes)} pooled over input sets, and skips."""
    from .kernel_measure import measure_interleaved
    from .kernel_shapes import make_batch

    samples, skipped = {}, {}
    for seed in seeds:
        if budget.left() < 0:
            raise OutOfTime(f"stopped before input set {seed}")
        batch = make_batch(*shape, dtype, device, seed=seed)
        fns = _providers(batch)
        skipped.update({k: v for k, v in fns.items() if isinstance(v, str)})
        fns = {k: _guarded(v) for k, v in fns.items() if not isinstance(v, str)}
        for pass_name in PASSES:
            for name, res in measure_interleaved(fns, batch, pass_name, reps, warmup).items():
                if isinstance(res, Exception):
                    skipped[name] = f"{pass_name} failed: {type(res).__name__}: {str(res)[:160]}"
                    continue
                samples.setdefault((name, pass_name), []).append(res)
            _free(device)
        del batch, fns
        _free(device)
    pooled = {k: (statistics.median(s[0] for s in v), max(s[1] for s in v), v[-1][2]) for k, v in samples.items()}
    return pooled, skipped


def verdicts(step: dict, mm_tflops: float):
    """The four acceptance verdicts from step-pass numbers {provider: (ms, extra MiB, TFLOP/s)}."""
    ours = step.get("triton")

    def verdict(name, need, ok, detail):
        missing = [p for p in need if p not in step]
        if missing:
            return name, "UNSETTLED", f"no step measurement for {', '.join(missing)}"
        return name, "PASS" if ok() else "FAIL", detail()

    naive, liger = step.get("naive"), step.get("liger")
    return [
        verdict(
            ">= 2x faster than Liger chunked GRPO",
            ["triton", "liger"],
            lambda: liger[0] >= 2 * ours[0],
            lambda: f"ours {ours[0]:.1f} ms vs liger {liger[0]:.1f} ms ({liger[0] / ours[0]:.2f}x)",
        ),
        verdict(
            "no slower than naive",
            ["triton", "naive"],
            lambda: ours[0] <= naive[0],
            lambda: f"ours {ours[0]:.1f} ms vs naive {naive[0]:.1f} ms",
        ),
        verdict(
            "extra memory <= 2% of naive",
            ["triton", "naive"],
            lambda: ours[1] <= 0.02 * naive[1],
            lambda: (
                f"ours {ours[1]:.1f} MiB vs naive {naive[1]:.1f} MiB"
                + (f" ({100 * ours[1] / naive[1]:.2f}%)" if naive[1] > 0 else "")
            ),
        ),
        verdict(
            "TFLOP/s >= 60% of matmul",
            ["triton"],
            lambda: ours[2] >= 0.6 * mm_tflops,
            lambda: f"ours {ours[2]:.1f} vs matmul {mm_tflops:.1f} TFLOP/s ({100 * ours[2] / mm_tflops:.0f}%)",
        ),
    ]


def run_benchmark_check(result: PartResult, device, budget: Budget, cpu: bool):
    shape = CPU_SHAPE if cpu else GPU_SHAPE
    n, hdim, vocab = shape
    dtype = torch.bfloat16
    seeds, reps, warmup = ((0,), 2, 1) if cpu else ((0, 1), 5, 2)
    mm = matmul_tflops(n, hdim, vocab, dtype, device, reps=reps)
    result.add("matmul 6NHV", "tflops", mm)
    pooled, skipped = _measure(shape, dtype, device, seeds, reps, warmup, budget)
    table, step = [], {}
    for (name, pass_name), (seconds, peak, grads) in sorted(pooled.items()):
        flops = PASS_FLOPS[pass_name] * n * hdim * vocab
        tflops = flops / seconds / 1e12
        extra = (peak - grads) / 2**20
        item = f"{name} {pass_name}"
        result.add(item, "time_ms", seconds * 1e3)
        result.add(item, "peak_mib", peak / 2**20)
        result.add(item, "extra_mib", extra if pass_name == "step" else None)
        result.add(item, "tflops", tflops)
        if pass_name == "step":
            step[name] = (seconds * 1e3, extra, tflops)
        table.append(
            [
                name,
                pass_name,
                f"{seconds * 1e3:.2f}",
                f"{peak / 2**20:.1f}",
                f"{extra:.1f}" if pass_name == "step" else "",
                f"{tflops:.2f}",
            ]
        )
    for name, why in skipped.items():
        result.add(name, "skipped", why)
        table.append([name, "-", "", "", "", why[:100]])
    result.lines.append(
        f"N={n}, H={hdim}, V={vocab}, bf16, median of {reps} reps after {warmup} warm-up, "
        f"{len(seeds)} input set(s); plain bf16 matmul of 6NHV FLOPs: **{mm:.1f} TFLOP/s**. "
        "TFLOP/s of fwd/bwd use nominal 2NHV/4NHV (torch and liger compute the gradient in fwd)."
    )
    result.lines.append("Extra memory (step) = peak allocated during fwd+bwd above the inputs, minus dH and dW.")
    result.lines += md_table(["provider", "pass", "ms", "peak MiB", "extra MiB", "TFLOP/s"], table)
    record_verdicts(result, verdicts(step, mm), enforce=not cpu)
    if "triton" not in step:
        result.add("triton step", "measured", False, ok=False)


def record_verdicts(result: PartResult, found, enforce: bool):
    """A FAIL fails the part (and the check) on the GPU; UNSETTLED (a provider that could not run, e.g. Liger
    not importable) is reported but decides nothing.  The CPU twin's tiny shape in the interpreter says
    nothing about the acceptance, so there the verdicts are shown and never enforced."""
    twin = "" if enforce else " (CPU twin: tiny shape, NOT the GPU acceptance; not enforced)"
    result.lines += ["", f"Acceptance verdicts{twin}:"]
    for name, verdict, detail in found:
        ok = verdict == "PASS" if enforce and verdict != "UNSETTLED" else None  # None: recorded, decides nothing
        result.add(f"verdict: {name}", "verdict", verdict, ok=ok, detail=detail)
        result.lines.append(f"- **{verdict}** {name}: {detail}")
        result.summary.append(f"{verdict}{'' if enforce else ' (not enforced)'}: {name}: {detail}")
