import base64
import json
import subprocess
import sys

from fastdapo.launch import build_commands


def world(cmd):
    arg = next(a for a in cmd if a.startswith("--world_info="))
    return json.loads(base64.urlsafe_b64decode(arg.split("=", 1)[1]))


def test_single_node_uses_per_node_launcher():
    (cmd,) = build_commands(["cfg.yaml"], num_procs=2)
    assert cmd[1:4] == ["-u", "-m", "deepspeed.launcher.launch"]
    assert world(cmd) == {"node0": [0, 1]}
    assert "--node_rank=0" in cmd and "--no_local_rank" in cmd
    assert cmd[-4:] == ["--module", "fastdapo.cli", "train", "cfg.yaml"]


def test_per_node_mode_describes_whole_world():
    (cmd,) = build_commands([], num_procs=8, nnodes=4, node_rank=3, master_addr="10.1.2.3", master_port=1234)
    assert world(cmd) == {f"node{i}": list(range(8)) for i in range(4)}
    assert "--node_rank=3" in cmd and "--master_addr=10.1.2.3" in cmd and "--master_port=1234" in cmd


def test_hostfile_mode_uses_deepspeed_runner():
    (cmd,) = build_commands(["c.yaml"], num_procs=1, hostfile="hosts")
    assert cmd[:3] == ["deepspeed", "--hostfile", "hosts"] and cmd[-2:] == ["train", "c.yaml"]


def test_dry_run_prints_commands_and_validates_config_first():
    ok = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "launch", "--num-procs", "2", "--dry-run", "--set", "run.steps=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and "deepspeed.launcher.launch" in ok.stdout and "run.steps=2" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "launch", "--dry-run", "--set", "run.stepz=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "run.stepz" in bad.stderr and "Traceback" not in bad.stderr
