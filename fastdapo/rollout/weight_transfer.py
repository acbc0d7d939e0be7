"""Weights from a trainer process to its generator process, tagged with a policy version.

The two form a process group of their own (two members, made from a TCP store the trainer hosts), apart from
the trainer's world group: gloo between CPU processes, NCCL between a trainer GPU and a generator GPU (the
backend is chosen by the device, from ``BACKENDS``). NCCL carries CUDA tensors only, so every tensor the link
sends or receives into is placed by ``to_link`` on the device of its end. The layout (every checkpoint name
with its shape and dtype, tied names included) is fixed once at start; after every update the trainer
broadcasts the version, then the weights packed into flat buckets of one dtype each (at most
``bucket_bytes``). In the generator a receiver thread stages every bucket; the generator swaps the staged
weights in only between requests, under the same lock, so no response mixes two versions and a transfer never
waits for more than one swap.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

BUCKET_BYTES = 64 * 2**20
STOP = -1  # the version that tells the receiver to end
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def layout_of(stream: Iterable[tuple[str, torch.Tensor]]) -> list[Entry]:
    return [Entry(n, tuple(t.shape), t.dtype) for n, t in stream]


def buckets(layout: list[Entry], bucket_bytes: int) -> list[list[int]]:
    """Consecutive entries of one dtype, at most ``bucket_bytes`` per bucket (a larger tensor alone)."""
    out: list[list[int]] = []
    size = 0
    for i, e in enumerate(layout):
        b = torch.Size(e.shape).numel() * torch.empty((), dtype=e.dtype).element_size()
        if not out or layout[out[-1][-1]].dtype != e.dtype or size + b > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(i)
        size += b
    return out


def _gloo(store, rank: int, timeout: datetime.timedelta):
    return dist.ProcessGroupGloo(store, rank, 2, timeout)


def _nccl(store, rank: int, timeout: datetime.timedelta):
    opts = dist.ProcessGroupNCCL.Options()
    opts._timeout = timeout
    return dist.ProcessGroupNCCL(store, rank, 2, opts)


BACKENDS = {"gloo": _gloo, "nccl": _nccl}
BACKEND_FOR_DEVICE = {"cpu": "gloo", "cuda": "nccl"}


def _group(host: str, port: int, rank: int, device: torch.device, timeout_s: float):
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(host, port, 2, is_master=rank == 0, timeout=timeout)
    return BACKENDS[BACKEND_FOR_DEVICE[device.type]](store, rank, timeout)


def to_link(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The one place that puts a tensor where the link can carry it (a GPU's, under NCCL)."""
    return t.to(device)


def link_broadcast(pg, t: torch.Tensor) -> None:
    pg.broadcast([t], dist.BroadcastOptions()).wait()


def _settle(device: torch.device) -> None:
    if device.type == "cuda":  # NCCL work is queued on a stream: done means done on the device
        torch.cuda.synchronize(device)


class WeightSender:
    """Trainer side. ``send(version, stream)`` blocks until the generator's receiver has every bucket."""

    def __init__(self, host: str, port: int, layout: list[Entry], bucket_bytes: int = BUCKET_BYTES, timeout_s=600.0,
                 device: torch.device = CPU):  # fmt: skip
        self.layout, self.plan, self.device = layout, buckets(layout, bucket_bytes), device
        self.pg = _group(host, port, 0, device, timeout_s)

    def _header(self, version: int) -> None:
        link_broadcast(self.pg, to_link(torch.tensor([version], dtype=torch.int64), self.device))

    def send(self, version: int, stream: Iterator[tuple[str, torch.Tensor]]) -> None:
        self._header(version)
        items = iter(stream)
        for bucket in self.plan:
            parts = []
            for i in bucket:
                name, t = next(items)
                e = self.layout[i]
                if name != e.name or tuple(t.shape) != e.shape:
                    got = f"{name} {tuple(t.shape)}"
                    raise RuntimeError(f"weight stream changed: got {got}, expected {e.name} {e.shape}")
                parts.append(t.detach().to(e.dtype).reshape(-1))
            flat = to_link(torch.cat(parts) if len(parts) > 1 else parts[0].clone(), self.device)
            link_broadcast(self.pg, flat)
        _settle(self.device)

    def stop(self) -> None:
        self._header(STOP)


class WeightReceiver:
    """Generator side: a thread receives into staging buffers; ``take(load)`` hands the newest complete
    version to ``load(named_tensors)`` between requests and returns its version (None: nothing new)."""

    def __init__(self, host: str, port: int, layout: list[Entry], bucket_bytes: int = BUCKET_BYTES, timeout_s=600.0,
                 device: torch.device = CPU, on_error: Callable[[BaseException], None] | None = None):  # fmt: skip
        self.layout, self.plan, self.device = layout, buckets(layout, bucket_bytes), device
        self.on_error = on_error  # called from the receiver thread: a generator ends at once, as the trainer waits
        self.pg = _group(host, port, 1, device, timeout_s)
        self.flats = [  # staging: one more copy of the weights on the generator's device
            to_link(torch.empty(sum(torch.Size(layout[i].shape).numel() for i in b), dtype=layout[b[0]].dtype,
                                device=device), device)
            for b in self.plan
        ]  # fmt: skip
        self.views: list[tuple[str, torch.Tensor]] = []
        for bucket, flat in zip(self.plan, self.flats):
            off = 0
            for i in bucket:
                e = self.layout[i]
                n = torch.Size(e.shape).numel()
                self.views.append((e.name, flat[off : off + n].view(e.shape)))
                off += n
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.staged: int | None = None  # newest complete version in the buffers
        self.loaded: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="weight-receiver", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.device.type == "cuda":  # the current device is per thread
                torch.cuda.set_device(self.device)
            while True:
                header = to_link(torch.empty(1, dtype=torch.int64, device=self.device), self.device)
                link_broadcast(self.pg, header)
                version = int(header.item())
                if version == STOP:
                    return
                with self.lock:  # no swap reads the buffers while they fill
                    for flat in self.flats:
                        link_broadcast(self.pg, flat)
                    _settle(self.device)
                    self.staged = version
                    self.ready.notify_all()
        except BaseException as e:  # the trainer went away, or the link failed: the generator reports it
            with self.lock:
                self.error = e
                self.ready.notify_all()
            if self.on_error is not None:
                self.on_error(e)

    def take(self, load: Callable[[list[tuple[str, torch.Tensor]]], None], at_least: int | None = None) -> int | None:
        """Load the newest staged version if it is newer than the loaded one (waiting for version
        ``at_least`` first, when given); returns the version loaded now, or None."""
        with self.lock:
            while at_least is not None and (self.staged is None or self.staged < at_least) and self.error is None:
                self.ready.wait(timeout=1.0)
            if self.error is not None:
                raise RuntimeError(f"weight transfer from the trainer failed: {self.error}")
            if self.staged is None or self.staged == self.loaded:
                return None
            load(self.views)
            self.loaded = self.staged
            return self.loaded
