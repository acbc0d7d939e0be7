"""Kernel tests: the Triton interpreter without a CUDA device (CI), the compiled kernels with one.

Triton decides at decoration time whether a kernel is interpreted; the kernels package decorates
lazily at first launch, so setting the variable here (before any kernel runs) is enough.

Compiled, the tests stay as written (CPU tensors against a float64 CPU reference) and only the Triton
calls move: before any test module imports them, the package's two entry points are wrapped so that a
call with impl="triton" runs on the GPU, its results coming back to the CPU (autograd follows both
copies).  The wrapper acts only while a test of this folder runs.  `make gpu-check` runs this folder
compiled as its part (d).
"""

import functools
import inspect
import os
import sys
from pathlib import Path

import torch

COMPILED = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The repository root must win over tests/kernels (a namespace-package look-alike) for `kernels`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

# Compiled, these assert the interpreter itself; the compiled kernels are checked by every other test.
INTERPRETER_ONLY = {"test_triton_runs_in_interpreter_here"}
_on_gpu = {"active": False}


def _moved(x, device):
    if torch.is_tensor(x):
        return x.to(device)
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a named tuple
        return type(x)(*(_moved(v, device) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_moved(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _moved(v, device) for k, v in x.items()}
    return x


def _triton_on_gpu(fn):
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            impl = signature.bind(*args, **kwargs).arguments.get("impl", "auto")
        except TypeError:  # a test of the error itself
            impl = None
        if not _on_gpu["active"] or impl != "triton":
            return fn(*args, **kwargs)
        cuda = torch.device("cuda")
        return _moved(fn(*_moved(args, cuda), **_moved(kwargs, cuda)), torch.device("cpu"))

    return call


if COMPILED:
    import fastdapo_kernels

    for _name in ("fused_linear_dapo_loss", "linear_logprobs"):
        setattr(fastdapo_kernels, _name, _triton_on_gpu(getattr(fastdapo_kernels, _name)))


def _triton_runs() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return COMPILED or os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture(autouse=True)
def _gpu_for_triton_calls():
    _on_gpu["active"] = COMPILED
    yield
    _on_gpu["active"] = False


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Force several row chunks and exp tiles (ragged last ones) in the torch back-end."""
    from fastdapo_kernels import torch_chunked as tc

    monkeypatch.setattr(tc, "CHUNK_ELEMENTS", 7 * 5003 + 11)
    monkeypatch.setattr(tc, "EXP_TILES", 3)  # 32-row chunks -> exp tiles of 11, 11, 10 rows
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "triton: runs the Triton kernels (interpreted on CPU, compiled on CUDA)")


def pytest_collection_modifyitems(config, items):
    if not _triton_runs():
        skip = pytest.mark.skip(reason="triton not importable, or neither CUDA nor TRITON_INTERPRET=1")
        for item in items:
            if "triton" in item.keywords or "[triton" in item.nodeid:
                item.add_marker(skip)
    elif COMPILED:
        skip = pytest.mark.skip(reason="asserts the Triton interpreter; this run is compiled on CUDA")
        for item in items:
            if getattr(item, "originalname", item.name) in INTERPRETER_ONLY:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
