"""One-command GPU check: kernel correctness, the acceptance benchmark and toy DAPO steps.

    PYTHONPATH=. python3 bench/gpu_check.py --out bench/results/gpu-check     # on a CUDA machine
    python bench/gpu_check.py --cpu --out /tmp/gpu-check                     # CPU twin (CI)

Needs only torch, triton and transformers (argparse, no click/rich), runs from the repository root
without installing.  Every part runs under try/except and a global time budget; a failing part is
reported (with its traceback tail) and the rest still run.  Writes report.md and results.csv into
--out and prints a compact summary (a device returns only the tail of its output).
``--cpu`` runs the same code on CPU: Triton interpreter, tiny shapes, one toy step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"a": "kernels vs float64 reference", "b": "kernel benchmark", "c": "toy DAPO steps"}


def _prepare_imports(cpu: bool):
    """Interpreter flag before triton loads; the checkout's packages importable without installing."""
    if cpu:
        os.environ["TRITON_INTERPRET"] = "1"
    for path in (ROOT / "bench", ROOT / "kernels", ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _environment(torch, device) -> list[str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for name in ("triton", "transformers", "flash-attn", "liger-kernel"):
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name} absent")
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}"
    return [
        f"Device: {dev}; Python {platform.python_version()}, torch {torch.__version__}, "
        + ", ".join(libs)
        + (", TRITON_INTERPRET=1" if os.environ.get("TRITON_INTERPRET") == "1" else "")
    ]


def run_parts(selected, device, budget, cpu, min_left):
    from fastdapo_bench.gpu_check_bench import run_benchmark_check
    from fastdapo_bench.gpu_check_common import OutOfTime, PartResult
    from fastdapo_bench.gpu_check_kernels import run_kernel_check
    from fastdapo_bench.gpu_check_toy import run_toy_check

    runners = {"a": run_kernel_check, "b": run_benchmark_check, "c": run_toy_check}
    results = []
    for key in selected:
        result = PartResult(key)
        t0 = time.monotonic()
        if budget.left() < min_left[key]:
            result.status = "skipped"
            result.lines.append(f"Skipped: {budget.left():.0f} s of the budget left, part needs ~{min_left[key]} s.")
        else:
            try:
                runners[key](result, device, budget, cpu)
            except OutOfTime as exc:
                result.status = "error"
                result.lines.append(f"Stopped by the time budget: {exc}")
            except Exception as exc:
                result.status = "error"
                tail = "".join(traceback.format_exception(exc))[-1500:]
                result.lines += [f"Error: {type(exc).__name__}: {str(exc)[:300]}", "```", tail, "```"]
                result.summary.append(f"error: {type(exc).__name__}: {str(exc)[:160]}")
        result.seconds = time.monotonic() - t0
        print(f"part {key} ({PARTS[key]}): {result.status} in {result.seconds:.1f} s", flush=True)
        results.append(result)
        _free(device)
    return results


def _free(device):
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CPU twin: Triton interpreter, tiny shapes, one toy step")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu-check")
    ap.add_argument("--parts", default="abc", help="subset of a (kernels), b (benchmark), c (toy steps)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget; late parts are skipped")
    args = ap.parse_args(argv)
    _prepare_imports(args.cpu)

    import torch

    from fastdapo_bench.gpu_check_common import Budget
    from fastdapo_bench.gpu_check_report import write_report

    budget = Budget(args.budget_s)
    if args.cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: use --cpu for the CPU twin", file=sys.stderr)
        return 2
    # seconds a part needs to be worth starting (GPU: compile + the big benchmark shape)
    min_left = {"a": 5, "b": 10, "c": 5} if args.cpu else {"a": 30, "b": 120, "c": 30}
    selected = [p for p in "abc" if p in args.parts]
    results = run_parts(selected, device, budget, args.cpu, min_left)
    summary = write_report(args.out, results, _environment(torch, device), PARTS, budget.elapsed(), args.cpu)
    print(summary)
    return 0 if all(r.status == "pass" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
