"""Process-group setup and the few collectives the trainer needs (no-ops on one process).

Every collective fastdapo issues goes through this module, and every tensor it hands to one is placed by
`to_comm`, on `comm_device()`: the device the default process group serves. That is the CPU for gloo and
this rank's GPU for NCCL, which refuses CPU tensors ("No backend type associated with device type cpu").
The world group stays plain NCCL on GPUs, rather than a mixed `cpu:gloo,cuda:nccl` group, because
DeepSpeed and vLLM's external launcher build their own groups from the world's backend and expect it.
Object collectives and barriers need the rank's GPU to be the current device, which `init_distributed` sets.
"""

from __future__ import annotations

import contextlib
import os
import socket

import torch
import torch.distributed as dist

from fastdapo.config.load import ConfigError


def free_port() -> int:
    """A TCP port free on this host right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_free_port = free_port


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("run.device: 'cuda' but no CUDA device is visible; set run.device=auto or cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(device: torch.device, backend: str = "auto", timeout_s: int = 600) -> None:
    """Join the launcher's process group, or make a one-process group when run directly."""
    if dist.is_available() and dist.is_initialized():
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    own_rendezvous = "MASTER_PORT" not in os.environ
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    import datetime

    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    release_shm_workspace()
    if own_rendezvous:  # a one-process group made here: don't hand its port to child processes
        os.environ.pop("MASTER_PORT", None)
        os.environ.pop("MASTER_ADDR", None)


def shm_workspace_path(rank: int, addr: str, port: str) -> str:
    """DeepSpeed's CPU all-reduce workspace of `rank` (one per rank, about 66 MB of /dev/shm), made when every rank
    of the world is on this node. DeepSpeed never unlinks it, so each launched run would keep its workspaces in
    memory until the machine restarts."""
    return f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{rank}"


def release_shm_workspace() -> None:
    """Unlink this rank's workspace once every rank has mapped all of them: the mappings stay valid for the run,
    and the memory returns when the last rank exits, however it ends."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or comm_device().type != "cpu":
        return  # one process, or a GPU group: DeepSpeed made no workspace
    dist.barrier()  # every rank has passed DeepSpeed's init, which opens the others' workspaces by name
    path = shm_workspace_path(dist.get_rank(), os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", ""))
    with contextlib.suppress(FileNotFoundError):  # ranks on several nodes: no workspace
        os.unlink(path)


def comm_device() -> torch.device:
    """The device whose tensors the default group carries: the CPU where it serves the CPU, else the rank's
    accelerator (asked of the group itself, so a mixed group such as `cpu:gloo,cuda:nccl` keeps the CPU)."""
    if not dist.is_initialized():
        return torch.device("cpu")
    served = [torch.device(d).type for d in getattr(dist.group.WORLD, "_device_types", [])]
    if not served:  # torch without the query: NCCL is the one backend here that serves no CPU tensors
        served = ["cuda"] if dist.get_backend() == "nccl" else ["cpu"]
    if "cpu" in served:
        return torch.device("cpu")
    return torch.device(served[0], int(os.environ.get("LOCAL_RANK", 0)))


def to_comm(t: torch.Tensor) -> torch.Tensor:
    """The one place that puts a collective's tensor where the process group can carry it."""
    return t.to(comm_device())


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def local_world_size() -> int:
    """Processes of this run on this node: torchrun names it LOCAL_WORLD_SIZE, DeepSpeed's launcher LOCAL_SIZE."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or 1)


def is_main() -> bool:
    return rank() == 0


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    if world_size() == 1:
        return list(values)
    t = to_comm(torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.cpu().tolist()


def all_gather_list(items: list) -> list:
    """Concatenation of every rank's list, in rank order (the same result on all ranks)."""
    if world_size() == 1:
        return list(items)
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def barrier() -> None:
    if world_size() > 1:
        device = comm_device()
        # NCCL's barrier otherwise guesses the rank's GPU from its rank and warns
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()
