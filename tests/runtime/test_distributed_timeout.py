"""distributed.timeout_s: a collective that a rank never joins ends the run with an error after that many seconds,
instead of hanging (a rank stuck in a long generation, a dead node)."""

import os
import subprocess
import time

import pytest

from fastdapo.config import load_config
from fastdapo.launch import build_commands
from fastdapo.runtime import distributed as D
from fastdapo.runtime.distributed import free_port
from fastdapo.training import trainer

RANK = """
import os, time, torch
import torch.distributed as dist
from fastdapo.runtime import distributed as D
D.init_distributed(torch.device("cpu"), "gloo", timeout_s=int(os.environ["TIMEOUT_S"]))
if os.environ["RANK"] == "1":
    time.sleep(120)  # never reaches the barrier in time
t0 = time.monotonic()
try:
    dist.barrier()
except Exception as e:
    print(f"rank 0 barrier failed after {time.monotonic() - t0:.1f} s: {type(e).__name__}", flush=True)
    raise SystemExit(3)
print("rank 0 barrier passed", flush=True)
"""


def test_a_collective_a_rank_never_joins_fails_after_timeout_s(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    (cmd,) = build_commands([], num_procs=2, master_port=free_port(), rank_log_dir=str(tmp_path / "logs"))
    cmd = cmd[: cmd.index("--module")] + [str(script)]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TIMEOUT_S": "4"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=110, env=env)
    wall = time.monotonic() - t0
    assert proc.returncode != 0 and "rank 0 barrier failed after" in proc.stdout, proc.stdout[-2000:]
    waited = float(proc.stdout.split("rank 0 barrier failed after ", 1)[1].split(" s")[0])
    assert 3.5 <= waited < 60, waited  # the configured 4 s (plus scheduling), not DeepSpeed's or torch's default
    assert wall < 100  # and the launcher ended the sleeping rank: no hang


def test_the_trainer_joins_the_process_group_with_the_configured_timeout(monkeypatch):
    seen = {}

    def stop(device, backend, timeout_s):
        seen.update(backend=backend, timeout_s=timeout_s)
        raise KeyboardInterrupt  # nothing past joining the group matters here

    monkeypatch.setattr(D, "init_distributed", stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(load_config(None, ["distributed.timeout_s=77", "run.device=cpu"]))
    assert seen == {"backend": "auto", "timeout_s": 77}
