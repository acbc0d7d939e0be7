"""Collectives are correct on every backend: the device comes from the group, and fastdapo places every tensor
it sends there (checked under NCCL's rule, emulated: tests/runtime/nccl_rule)."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_alone(body: str) -> None:
    """A fresh one-process group in a fresh interpreter: the suite's own process may already hold one."""
    script = textwrap.dedent(
        """
        import pytest, torch, torch.distributed as dist
        from fastdapo.runtime import distributed as D
        """
    ) + textwrap.dedent(body)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "3"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize(
    "backend, expected",
    [("gloo", "cpu"), ("cuda:gloo", "cuda:3"), ("cpu:gloo,cuda:gloo", "cpu")],
)
def test_comm_device_is_the_device_the_group_serves(backend, expected):
    """'cuda:gloo' is a real group that, like NCCL, serves CUDA tensors only: the device is the rank's GPU."""
    run_alone(
        f"""
        assert D.comm_device() == torch.device("cpu")  # no group yet
        dist.init_process_group({backend!r})
        assert D.comm_device() == torch.device({expected!r}), D.comm_device()
        """
    )


def test_a_group_that_serves_only_cuda_refuses_cpu_tensors():
    """The rule the emulation stands for, shown by torch itself (the error an NCCL group gives)."""
    run_alone(
        """
        dist.init_process_group("cuda:gloo")
        with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
            dist.all_reduce(torch.ones(1))
        """
    )


def test_emulated_rule_refuses_what_fastdapo_did_not_place():
    run_alone(
        """
        dist.init_process_group("gloo")
        probe = {"__name__": "fastdapo.probe", "dist": dist, "torch": torch, "D": D}
        with pytest.raises(RuntimeError, match="device type cpu .emulated NCCL rule: fastdapo.probe"):
            exec("dist.all_reduce(torch.ones(1))", probe)
        exec("t = D.to_comm(torch.ones(1)); dist.all_reduce(t)", probe)
        assert probe["t"].item() == 1.0
        dist.all_reduce(torch.ones(1))  # libraries' own collectives (model tensors) are not fastdapo's to place
        """
    )


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
