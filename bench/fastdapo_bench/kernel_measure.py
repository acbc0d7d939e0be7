"""Timing and peak-memory measurement for one (provider, pass) on CPU or CUDA.

Memory method:
- CUDA: ``torch.cuda.max_memory_allocated()`` during the pass minus the memory allocated just
  before it (inputs, and for the backward pass the saved forward state, are not counted).
- CPU: a background thread samples the process resident set size (/proc/self/statm) every
  ~0.5 ms; the peak minus the RSS just before the pass is reported.  glibc's mmap threshold is
  pinned to 64 KiB first, so every tensor buffer of that size or more is its own mapping, is
  returned to the OS when freed, and shows up in (and leaves) the RSS when it is touched.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import threading
import time

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def pin_malloc_thresholds() -> bool:
    """Make large CPU buffers map/unmap directly so RSS tracks live tensor memory (glibc only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024) == 1
    except OSError:
        return False


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class RssPeak:
    """Context manager: ``.peak`` is the largest RSS increase seen while inside."""

    def __init__(self, interval=0.0005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self._max = max(self._max, _rss())
            time.sleep(self.interval)

    def __enter__(self):
        self._base = self._max = _rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._max = max(self._max, _rss())
        self._stop.set()
        self._thread.join()
        self.peak = self._max - self._base


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure_once(device, run, prepare=None):
    """(seconds, peak bytes) of ``run()``; ``prepare()`` runs first, untimed."""
    state = prepare() if prepare else None
    _sync(device)
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(state)
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3, torch.cuda.max_memory_allocated(device) - base
    with RssPeak() as mem:
        t0 = time.perf_counter()
        run(state)
        seconds = time.perf_counter() - t0
    return seconds, mem.peak


def _grad_bytes(batch):
    return sum(t.grad.numel() * t.grad.element_size() for t in (batch.hidden, batch.weight) if t.grad is not None)


def measure_once(loss_fn, batch, pass_name):
    """(seconds, peak bytes, gradient bytes) of one pass: "fwd", "bwd" or "step" (fwd+bwd).

    The gradient bytes are the .grad buffers the pass leaves behind (dH and dW): every provider
    has to produce them, so they are reported separately as well as inside the peak.
    """
    device = batch.hidden.device

    def fwd(_):
        return loss_fn()

    def bwd(loss):
        loss.backward()

    def step(_):
        loss_fn().backward()

    plans = {"fwd": (None, fwd), "bwd": (loss_fn, bwd), "step": (None, step)}
    prepare, run = plans[pass_name]
    batch.zero_grad()
    seconds, peak = _measure_once(device, run, prepare)
    grads = _grad_bytes(batch)
    batch.zero_grad()
    return seconds, peak, grads


def measure_interleaved(loss_fns: dict, batch, pass_name, reps=3, warmup=1):
    """Median time / max peak per provider, alternating providers rep by rep.

    Interleaving keeps slow drifts of a shared machine from favouring whichever ran first.
    Returns {name: (median seconds, max peak bytes, gradient bytes)} or an exception per name.
    """
    samples = {name: [] for name in loss_fns}
    for i in range(warmup + reps):
        for name, fn in loss_fns.items():
            if isinstance(samples[name], Exception):
                continue
            try:
                sample = measure_once(fn, batch, pass_name)
            except (RuntimeError, MemoryError) as exc:  # e.g. out of memory on a big shape
                samples[name] = exc
                continue
            if i >= warmup:
                samples[name].append(sample)
    out = {}
    for name, got in samples.items():
        if isinstance(got, Exception):
            out[name] = got
        else:
            out[name] = (statistics.median(s[0] for s in got), max(s[1] for s in got), got[-1][2])
    return out
