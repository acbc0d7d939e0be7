"""verl's own ``math_dapo.compute_score``, taken from the released verl wheel of a named version.

The wheel is fetched once with ``pip download verl==<version> --no-deps`` into
``<cache>/verl-<version>/``; ``verl/utils/reward_score/math_dapo.py`` is read out of it and loaded as a
standalone module (it imports only ``re`` and ``typing`` in verl 0.9.x), so neither the verl package nor
its heavy dependencies are imported. Reruns find the wheel in the cache and need no network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

MEMBER = "verl/utils/reward_score/math_dapo.py"
NEWEST = "newest"
_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.+!_-]*")
_PIP_TIMEOUT_S = 300


class VerlFetchError(Exception):
    """One line for the user: which version could not be had, and what to do."""


@dataclass
class VerlMathDapo:
    version: str
    wheel: Path
    sha256: str  # of the wheel, so a report names exactly the code it ran
    fetched: bool  # downloaded by this run (False: found in the cache)
    compute_score: Callable


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastdapo"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
    )


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+!_-]", v))


def _cached_versions(cache_dir: Path) -> list[str]:
    return sorted(
        (p.name.removeprefix("verl-") for p in cache_dir.glob("verl-*") if _wheel_in(p) is not None), key=_version_key
    )


def resolve_newest(cache_dir: Path) -> tuple[str, bool]:
    """(version, from the cache): the newest release pip sees; offline, the newest one cached."""
    try:
        out = _pip("index", "versions", "verl", "--timeout", "20", "--retries", "1")  # offline: fail fast
        m = re.search(r"^verl \(([^)]+)\)", out.stdout, re.MULTILINE)
    except (OSError, subprocess.TimeoutExpired):
        m = None
    if m:
        return m.group(1), False
    cached = _cached_versions(cache_dir)
    if cached:
        return cached[-1], True
    raise VerlFetchError(
        "could not resolve the newest verl release (pip index versions verl failed and nothing is cached); "
        "check network access to PyPI, or name versions with --verl-version"
    )


def _wheel_in(folder: Path) -> Path | None:
    wheels = sorted(folder.glob("verl-*.whl")) if folder.is_dir() else []
    return wheels[0] if wheels else None


def fetch_wheel(version: str, cache_dir: Path) -> tuple[Path, bool]:
    """The cached wheel of ``version``, downloaded first when absent; (path, downloaded now)."""
    if not _VERSION_RE.fullmatch(version):
        raise VerlFetchError(f"verl version {version!r} is not a version number")
    folder = cache_dir / f"verl-{version}"
    wheel = _wheel_in(folder)
    if wheel is not None:
        return wheel, False
    folder.mkdir(parents=True, exist_ok=True)
    try:
        out = _pip("download", f"verl=={version}", "--no-deps", "--only-binary=:all:", "-d", str(folder))
        why = (out.stderr.strip().splitlines() or ["no wheel"])[-1] if out.returncode else "no wheel in its output"
    except (OSError, subprocess.TimeoutExpired) as e:
        why = f"{type(e).__name__}: {e}"
    wheel = _wheel_in(folder)
    if wheel is None:
        raise VerlFetchError(
            f"could not fetch verl=={version} ({why}); check network access to PyPI and that the version exists, "
            f"or put verl-{version}-py3-none-any.whl into {folder}"
        )
    return wheel, True


def load_math_dapo(wheel: Path, version: str) -> ModuleType:
    """``math_dapo.py`` read out of the wheel (also written next to it, for reading) and loaded alone."""
    try:
        with zipfile.ZipFile(wheel) as z:
            source = z.read(MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise VerlFetchError(
            f"verl {version}: {wheel} holds no readable {MEMBER} ({e}); delete it to refetch"
        ) from None
    path = wheel.parent / "math_dapo.py"
    path.write_bytes(source)
    name = "fastdapo_bench_verl_math_dapo_" + re.sub(r"\W", "_", version)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:  # a version whose math_dapo imports other verl modules
        raise VerlFetchError(
            f"verl {version}: math_dapo.py imports {e.name or e}, which the bench does not provide"
        ) from None
    if not callable(getattr(module, "compute_score", None)):
        raise VerlFetchError(f"verl {version}: math_dapo.py defines no compute_score")
    return module


def verl_math_dapo(version: str, cache_dir: Path) -> VerlMathDapo:
    wheel, fetched = fetch_wheel(version, cache_dir)
    module = load_math_dapo(wheel, version)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return VerlMathDapo(version, wheel, sha, fetched, module.compute_score)


def accepted(compute_score: Callable, response: str, ground_truth: str) -> bool | None:
    """verl's decision (a dict with ``acc`` in 0.9.x, a bare score in older releases); None if it raised."""
    try:
        out = compute_score(response, ground_truth)
    except Exception:  # the reference's own failures are counted, not fatal to the bench
        return None
    return bool(out["acc"]) if isinstance(out, dict) else float(out) > 0
