"""Small helpers shared by the Triton kernels: lazy JIT/autotune construction and launch."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

NEG_BIG = tl.constexpr(-1.0e30)  # finite "minus infinity": keeps 0 * (-inf) NaNs out of the math


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class LazyKernel:
    """A Triton kernel built on first launch.

    Whether Triton interprets a kernel is fixed when it is decorated, so decoration waits until the
    first launch.  On a GPU the kernel is autotuned over ``configs()``; in the interpreter it runs
    with the small fixed meta-parameters ``interpret_meta`` (tests may change them).
    """

    def __init__(self, fn, configs=None, key=None, interpret_meta=None, reset_to_zero=None):
        self.fn, self.configs, self.key = fn, configs, key
        self.interpret_meta = dict(interpret_meta or {})
        self.reset_to_zero = reset_to_zero
        self._built = {}

    def _kernel(self, interp: bool):
        if interp not in self._built:
            kernel = triton.jit(self.fn)
            if self.configs is not None and not interp:
                kernel = triton.autotune(configs=self.configs(), key=self.key, reset_to_zero=self.reset_to_zero)(kernel)
            self._built[interp] = kernel
        return self._built[interp]

    def launch(self, grid, *args, **kwargs):
        """``grid`` is a callable of the meta-parameter dict (as for autotuned kernels)."""
        interp = interpreting()
        kernel = self._kernel(interp)
        if self.configs is not None and interp:
            meta = dict(self.interpret_meta)
            kernel[grid(meta)](*args, **kwargs, **meta)
        else:
            kernel[grid](*args, **kwargs)


def build_kernel(fn, configs=None, key=None, interpret_meta=None, reset_to_zero=None) -> LazyKernel:
    return LazyKernel(fn, configs, key, interpret_meta, reset_to_zero)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs follow torch's TF32 switch (default off -> exact fp32 products)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())
    return 4


@functools.cache
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count
