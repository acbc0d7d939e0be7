"""GPU check part (d): the kernel test suite, `pytest tests/kernels`, with the Triton kernels compiled.

tests/kernels/conftest.py forces the Triton interpreter only where no CUDA device is visible, so here the
same tests run the compiled kernels.  The junit report counts the Triton tests that ran: a suite that
passed by skipping them (no Triton, a conftest that forced the interpreter) is a failure.  Not run on the
CPU twin: there plain `pytest tests/kernels` (CI) already runs these tests in the interpreter.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from .gpu_check_common import Budget, PartResult, child_env, has_module, log_tail, run_logged

XDIST_WORKERS = 4  # compiling and autotuning every test shape dominates; workers compile side by side


def _counts(junit: Path) -> dict:
    """passed / failed / skipped, overall and for the Triton tests (node ids naming triton)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "triton passed": 0, "triton skipped": 0}
    if not junit.exists():
        return counts
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
        outcome = "skipped" if case.find("skipped") is not None else outcome
        counts[outcome] += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lower()
        if "triton" in name and outcome != "failed":
            counts[f"triton {outcome}"] += 1
    return counts


def run_kernel_tests(result: PartResult, device, budget: Budget, cpu: bool, out: Path):
    if cpu:
        result.status = "skipped"
        result.lines.append("CPU twin: not run; plain `pytest tests/kernels` runs these tests in the interpreter (CI).")
        result.summary.append("skipped on the CPU twin: CI runs tests/kernels in the Triton interpreter")
        return
    if not has_module("pytest"):
        result.add("pytest", "importable", False, ok=False, detail="pytest not importable")
        result.summary.append("FAIL: pytest not importable")
        return
    junit, log = out / "kernel-tests.xml", out / "kernel-tests.log"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    if has_module("xdist"):
        cmd += ["-n", str(XDIST_WORKERS)]
    env, notes = child_env(cpu=False)
    code, seconds = run_logged(cmd, env, log, budget.left())
    counts = _counts(junit)
    ran = " ".join(cmd[1:])
    result.lines += ["```", ran, "```", *(f"- {n}" for n in notes), f"Output: {log}", ""]
    verdicts = [
        ("pytest exit code 0", code == 0, "killed by the time budget" if code is None else f"exit code {code}"),
        ("tests passed, none failed", counts["passed"] > 0 and counts["failed"] == 0, _summary(counts)),
        ("Triton tests ran compiled", counts["triton passed"] > 0, _triton(counts)),
    ]
    for name, ok, detail in verdicts:
        result.add(name, "verdict", "PASS" if ok else "FAIL", ok=ok, detail=detail)
        result.lines.append(f"- **{'PASS' if ok else 'FAIL'}** {name}: {detail}")
    if not all(ok for _, ok, _ in verdicts):
        result.lines += ["", f"End of {log.name}:", *log_tail(log, 40)]
    result.summary.append(f"ran ({seconds:.0f} s): {ran}: {_summary(counts)}; {_triton(counts)}")
    result.summary += [f"FAIL: {name}: {detail}" for name, ok, detail in verdicts if not ok]


def _summary(c: dict) -> str:
    return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def _triton(c: dict) -> str:
    return f"{c['triton passed']} Triton tests passed compiled, {c['triton skipped']} skipped"
