"""A wheel is a complete product: built from this tree, installed on its own (no checkout on the path), it
carries the kernels, the benchmarks, the built-in toy config and warm start, and `fastdapo train` runs the
built-in toy run from another directory."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools builds in place, and a build/ left in the checkout would both sit in the root
    # and carry files since deleted into later wheels.
    src = out / "src"
    skip = shutil.ignore_patterns(".git", ".venv*", ".cache", "build", "runs", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, src, ignore=skip, symlinks=True)
    # --no-build-isolation: setuptools from this environment, nothing downloaded
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("fastdapo-*.whl")
    return whl


def test_the_wheel_holds_every_package_and_the_built_in_run(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"fastdapo", "fastdapo_kernels", "fastdapo_bench"}, tops  # no `kernels`, no `bench`
    assert "fastdapo_kernels/triton_fwd.py" in names and "fastdapo_bench/e2e.py" in names
    for name in ("toy.yaml", "toy-chain.yaml"):  # the files themselves, not links
        assert zipfile.ZipFile(wheel).read(f"fastdapo/toy/{name}") == (ROOT / "configs" / name).read_bytes()
    assert any(n.startswith("fastdapo/toy/warm-start/") and n.endswith("model.safetensors") for n in names)


def test_the_installed_wheel_runs_the_toy_run_from_elsewhere(wheel, tmp_path):
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    probe = "import fastdapo, fastdapo_kernels; print(fastdapo.__file__, fastdapo_kernels.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert all(p.startswith(str(site)) for p in where.stdout.split()), where.stdout
    run = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", "--set", "run.steps=2", "--set", "toy.eval_size=16",
         "--set", "run.progress=false", "--set", "run.output_dir=run"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    steps = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2]
