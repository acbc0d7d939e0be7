"""Kernel tests run on CPU: the Triton kernels go through the Triton interpreter.

Triton decides at decoration time whether a kernel is interpreted; the kernels package decorates
lazily at first launch, so setting the variable here (before any kernel runs) is enough.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
# The repository root must win over tests/kernels (a namespace-package look-alike) for `kernels`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402
import torch  # noqa: E402
from kernel_cases import triton_usable  # noqa: E402


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Force several row chunks and exp tiles (ragged last ones) in the torch back-end."""
    from fastdapo_kernels import torch_chunked as tc

    monkeypatch.setattr(tc, "CHUNK_ELEMENTS", 7 * 5003 + 11)
    monkeypatch.setattr(tc, "EXP_TILES", 3)  # 32-row chunks -> exp tiles of 11, 11, 10 rows
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "triton: runs the Triton kernels (interpreted on CPU)")


def pytest_collection_modifyitems(config, items):
    if triton_usable():
        return
    skip = pytest.mark.skip(reason="triton not importable or TRITON_INTERPRET disabled")
    for item in items:
        if "triton" in item.keywords or "[triton" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
