"""DeepSpeed's CPU all-reduce puts a ~66 MB workspace per rank in /dev/shm and never unlinks it: a launched run
must not leave them behind, whether its ranks finish or are killed before they release their own."""

import os
import subprocess
import sys

from fastdapo.launch import build_commands
from fastdapo.runtime.distributed import free_port, shm_workspace_path

RANK = """
import os, sys, torch
import deepspeed.comm as dscomm
from fastdapo.runtime import distributed as D
{before}
D.init_distributed(torch.device("cpu"))
rank = int(os.environ["RANK"])
t = torch.full((8,), float(rank + 1))
if hasattr(torch.ops, "deepspeed") and hasattr(torch.ops.deepspeed, "inference_all_reduce_"):
    torch.ops.deepspeed.inference_all_reduce_(t)  # through the shm workspaces, after their names are gone
else:
    dscomm.all_reduce(t)
mine = D.shm_workspace_path(rank, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
# one write: under `python -u` print() writes each piece apart, and rank 1's copied lines could land between them
sys.stdout.write(f"rank {rank} sum {t[0].item()} named {os.path.exists(mine)}\\n")
sys.stdout.flush()
"""

# stands in for a rank killed during DeepSpeed's init: its workspace exists, and it never reaches the release
KILLED_EARLY = """
import deepspeed
if os.environ["RANK"] == "1":
    deepspeed.init_distributed(dist_backend="gloo")
    os.kill(os.getpid(), 9)
"""


def launch(tmp_path, before: str = ""):
    script = tmp_path / "rank.py"
    script.write_text(RANK.replace("{before}", before))
    port = free_port()
    (cmd,) = build_commands([], num_procs=2, master_port=port, rank_log_dir=str(tmp_path / "logs"))
    cmd = cmd[: cmd.index("--module")] + [str(script)]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return proc, [shm_workspace_path(r, "127.0.0.1", str(port)) for r in (0, 1)]


def test_ranks_release_their_workspaces_and_the_all_reduce_still_works(tmp_path):
    proc, paths = launch(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0 sum 3.0 named False" in proc.stdout
    assert "rank 1 sum 3.0 named False" in proc.stdout
    assert not any(os.path.exists(p) for p in paths)


def test_the_launcher_unlinks_what_a_killed_rank_left(tmp_path):
    proc, paths = launch(tmp_path, KILLED_EARLY)
    assert proc.returncode != 0
    assert not any(os.path.exists(p) for p in paths), sys.platform
