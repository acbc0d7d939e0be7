"""Collectives are correct on every backend: the device comes from the group, and fastdapo places every tensor
it sends there (checked under NCCL's rule, emulated: tests/runtime/nccl_rule)."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from fastdapo.runtime import distributed as D


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_process_group(monkeypatch):
    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1"}
    for k, v in {**env, "LOCAL_RANK": "3"}.items():
        monkeypatch.setenv(k, v)

    def init(backend):
        dist.init_process_group(backend)

    yield init
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "backend, expected",
    [("gloo", "cpu"), ("cuda:gloo", "cuda:3"), ("cpu:gloo,cuda:gloo", "cpu")],
)
def test_comm_device_is_the_device_the_group_serves(one_process_group, backend, expected):
    """'cuda:gloo' is a real group that, like NCCL, serves CUDA tensors only: the device is the rank's GPU."""
    one_process_group(backend)
    assert D.comm_device() == torch.device(expected)


def test_a_group_that_serves_only_cuda_refuses_cpu_tensors(one_process_group):
    """The rule the emulation stands for, shown by torch itself (the error an NCCL group gives)."""
    one_process_group("cuda:gloo")
    with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
        dist.all_reduce(torch.ones(1))


def test_emulated_rule_refuses_what_fastdapo_did_not_place(one_process_group):
    one_process_group("gloo")
    probe = {"__name__": "fastdapo.probe", "dist": dist, "torch": torch, "D": D}
    with pytest.raises(RuntimeError, match="device type cpu .emulated NCCL rule: fastdapo.probe"):
        exec("dist.all_reduce(torch.ones(1))", probe)
    exec("t = D.to_comm(torch.ones(1)); dist.all_reduce(t)", probe)
    assert probe["t"].item() == 1.0
    dist.all_reduce(torch.ones(1))  # libraries' own collectives (model tensors) are not fastdapo's to place


RANK_SCRIPT = textwrap.dedent(
    """
    import torch
    from fastdapo.runtime import distributed as D
    from fastdapo.runtime.signals import StopSignal
    D.init_distributed(torch.device("cpu"))
    r = D.rank()
    assert D.all_reduce([1.0, r], "sum") == [2.0, 1.0]
    assert D.all_reduce([r], "max") == [1.0]
    assert D.all_gather_list([r]) == [0, 1]
    D.barrier()
    assert StopSignal().requested() is False
    print("rank", r, "ok", flush=True)
    torch.distributed.destroy_process_group()  # DeepSpeed's shared-memory op aborts an exit that skips this
    """
)


def test_every_collective_of_the_runtime_under_the_rule(tmp_path):
    """Two ranks run each collective the runtime offers (the stop-signal check of the launcher's failure path
    too) with the emulated rule installed through sitecustomize, as the launcher's ranks get it."""
    assert os.environ.get("FASTDAPO_NCCL_RULE") == "1" and "nccl_rule" in os.environ["PYTHONPATH"]
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT],
            env={**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(r),
                 "LOCAL_RANK": str(r), "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for r in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert all(f"rank {r} ok" in o for r, o in enumerate(outs))
