"""Where a benchmark ran: the machine, the versions and the command, for the head of its results."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_name", "invocation", "machine_info", "machine_line", "provenance", "version"]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    fallback = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), fallback)
    except OSError:
        return fallback


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """The fastdapo checkout's commit, "+ uncommitted changes" when its tree differs; else the package version."""
    import fastdapo

    root = Path(fastdapo.__file__).resolve().parents[1]
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True, timeout=30)  # noqa: E731
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            raise OSError(head.stderr)
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip()[:12] + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"none (not a git checkout; fastdapo {version('fastdapo')})"


def machine_info() -> dict:
    """The CPU, its cores, the versions a result depends on, and the fastdapo commit."""
    gpu, torch_version = "none", version("torch")
    try:
        import torch

        torch_version = torch.__version__  # with its build (+cpu, +cu132): the wheel's metadata may drop it
        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch_version, "transformers": version("transformers"), "deepspeed": version("deepspeed"),
            "fastdapo_commit": git_commit()}  # fmt: skip


def machine_line(info: dict, extra: tuple[str, ...] = ()) -> str:
    """One markdown line: machine, versions (``extra`` distributions too, e.g. trl), commit."""
    versions = [f"{d} {info[d]}" for d in ("torch", "transformers", "deepspeed")]
    versions += [f"{d} {version(d)}" for d in extra]
    gpu = "" if info.get("gpu", "none") == "none" else f", GPU {info['gpu']}"
    return (f"Machine: {info['cpu']}, {info['cores']} cores{gpu}. Python {info['python']}, {', '.join(versions)}. "
            f"fastdapo commit {info['fastdapo_commit']}.")  # fmt: skip


def invocation() -> str:
    """The command line that started this process, as a user would type it (`fastdapo bench ...` for the CLI)."""
    prog = Path(sys.argv[0]).name
    if prog == "fastdapo":
        return shlex.join(["fastdapo", *sys.argv[1:]])
    module = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python", "-m", module.name] if module is not None else ["python", sys.argv[0]]
    return shlex.join([*head, *sys.argv[1:]])


def provenance(extra: tuple[str, ...] = ()) -> list[str]:
    """The markdown lines every results file starts its notes with: the command, then the machine line."""
    return [f"Command: `{invocation()}`  ", machine_line(machine_info(), extra)]
