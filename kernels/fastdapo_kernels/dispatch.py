"""Back-end registry: implementations are chosen by name from a plain dict."""

from __future__ import annotations

import importlib
import os

import torch

# name -> module (relative to this package) implementing logprobs / loss_forward / loss_backward
BACKENDS = {
    "torch": "torch_chunked",
    "triton": "triton_backend",
}


def triton_available(device: torch.device) -> bool:
    """True when Triton kernels can run on tensors of this device."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    if device.type == "cuda":
        return True
    return os.environ.get("TRITON_INTERPRET", "0") == "1" and device.type == "cpu"


def resolve(impl: str, device: torch.device):
    """Back-end module for ``impl`` ("auto" -> triton on CUDA tensors, torch otherwise)."""
    if impl == "auto":
        impl = "triton" if device.type == "cuda" and triton_available(device) else "torch"
    if impl not in BACKENDS:
        raise ValueError(f"unknown kernel impl {impl!r}; choose from {sorted(BACKENDS)} or 'auto'")
    if impl == "triton" and not triton_available(device):
        raise RuntimeError(
            f"impl='triton' needs CUDA tensors (got {device.type}); on CPU set TRITON_INTERPRET=1 "
            "before importing triton to run the kernels in the interpreter, or use impl='torch'"
        )
    return importlib.import_module("." + BACKENDS[impl], __package__)
