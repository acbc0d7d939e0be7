import base64
import json
import os
import socket
import subprocess
import sys

import pytest

from fastdapo.launch import build_commands
from fastdapo.launch_report import describe_launcher_exit, describe_status, failure_lines


def world(cmd):
    arg = next(a for a in cmd if a.startswith("--world_info="))
    return json.loads(base64.urlsafe_b64decode(arg.split("=", 1)[1]))


def test_single_node_uses_per_node_launcher():
    (cmd,) = build_commands(["cfg.yaml"], num_procs=2)
    assert cmd[1:4] == ["-u", "-m", "fastdapo.launch_node"]  # DeepSpeed's per-node launcher, watched
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
    assert ok.returncode == 0 and "fastdapo.launch_node" in ok.stdout and "run.steps=2" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "launch", "--dry-run", "--set", "run.stepz=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "run.stepz" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "status, expected",
    [(-9, "killed by SIGKILL"), (-15, "killed by SIGTERM"), (1, "exit code 1"), (0, "exit code 0")],
)
def test_a_rank_status_names_its_signal(status, expected):
    assert describe_status(status) == expected


def test_a_launcher_exit_status_unwraps_the_signal():
    assert describe_launcher_exit(247) == "exit status 247: a rank's status -9, killed by SIGKILL"
    assert describe_launcher_exit(137) == "exit status 137: killed by SIGKILL (128 + signal)"
    assert describe_launcher_exit(1) == "exit status 1"


# Rank 1 is killed with SIGKILL, printing nothing; rank 0 then fails on its own, as a survivor's
# collective does when its peer is gone (both end before DeepSpeed's launcher polls, once a second).
FAKE_RANK = """
import os, signal, sys, time
if os.environ["RANK"] == "1":
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)
print("rank", os.environ["RANK"], "started", flush=True)
time.sleep(0.6)
print("RuntimeError: Connection closed by peer", file=sys.stderr, flush=True)
sys.exit(1)
"""


def test_ranks_ended_after_the_first_failure_are_labelled():
    records = [
        {"rank": 0, "pid": 10, "status": -15, "ended": 5.2, "log": None},
        {"rank": 1, "pid": 11, "status": -9, "ended": 5.0, "log": None},
        {"rank": 2, "pid": 12, "status": 1, "ended": 5.1, "log": None},
        {"rank": 3, "pid": 13, "status": 0, "ended": 4.0, "log": None},
    ]
    lines, closing = failure_lines(records, 247, nodes=2)
    assert lines[0].startswith("rank 1 (pid 11) failed first on this node: killed by SIGKILL; ")
    assert lines[1].startswith("rank 2 (pid 12): exit code 1, 0.1 s after rank 1 failed: a follow-on error; ")
    assert lines[2].startswith("rank 0 (pid 10): killed by SIGTERM, 0.2 s after rank 1 failed: stopped by the launcher")
    assert len(lines) == 3 and closing.startswith("rank 1 failed first on this node (killed by SIGKILL)")
    lines, closing = failure_lines([], 247)  # no records (hostfile mode): the exit status, decoded
    assert lines == [] and "exit status 247: a rank's status -9, killed by SIGKILL" in closing


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_node_launcher_names_the_rank_that_failed_first_and_labels_the_follow_on(tmp_path):
    script, report, logs = tmp_path / "rank.py", tmp_path / "report.json", tmp_path / "logs"
    script.write_text(FAKE_RANK)
    (cmd,) = build_commands([], num_procs=2, master_port=free_port(), report_file=str(report), rank_log_dir=str(logs))
    cmd = cmd[: cmd.index("--module")] + [str(script)]  # the fake rank instead of `fastdapo train`
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    lines, closing = failure_lines(json.loads(report.read_text()), proc.returncode)
    first_pid = json.loads(report.read_text())[1]["pid"]
    assert lines[0] == (
        f"rank 1 (pid {first_pid}) failed first: killed by SIGKILL; it printed nothing (its log: {logs}/rank1.log)"
    )
    assert (
        lines[1].startswith("rank 0 (pid ")
        and "exit code 1" in lines[1]
        and "after rank 1 failed: a follow-on error" in lines[1]
    )
    assert "its output is this console's" in lines[1]
    assert closing == "rank 1 failed first (killed by SIGKILL); the launcher stopped the other processes"
    assert "Connection closed by peer" in proc.stderr  # rank 0 keeps the console


def test_another_rank_output_goes_to_the_console_and_its_log(tmp_path):
    script, report, logs = tmp_path / "rank.py", tmp_path / "report.json", tmp_path / "logs"
    script.write_text(
        "import os, sys, time, pathlib\n"
        f"done = pathlib.Path({str(tmp_path / 'rank0-printed')!r})\n"
        'print("hello from", os.environ["RANK"], flush=True)\n'
        'if os.environ["RANK"] == "0": done.touch()\n'
        "else:\n"
        "    while not done.exists(): time.sleep(0.05)  # else the launcher may stop rank 0 before it prints\n"
        "    sys.exit(3)\n"
    )
    (cmd,) = build_commands([], num_procs=2, master_port=free_port(), report_file=str(report), rank_log_dir=str(logs))
    cmd = cmd[: cmd.index("--module")] + [str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 3
    assert "[rank 1] hello from 1" in proc.stdout and "hello from 0" in proc.stdout
    assert "hello from 1" in (logs / "rank1.log").read_text() and not (logs / "rank0.log").exists()
    records = json.loads(report.read_text())
    lines, _ = failure_lines(records, proc.returncode)
    assert lines == [f"rank 1 (pid {records[1]['pid']}) failed first: exit code 3; its output: {logs}/rank1.log"]


def _rank_env(launcher_env: dict, slots: list[int], local_rank: int) -> dict:
    """The environment DeepSpeed's per-node launcher gives a rank on a CUDA node (its own accelerator code)."""
    from deepspeed.accelerator.cuda_accelerator import CUDA_Accelerator

    env = dict(launcher_env, LOCAL_RANK=str(local_rank), LOCAL_SIZE=str(len(slots)))
    CUDA_Accelerator.__new__(CUDA_Accelerator).set_visible_devices_envs(env, slots)
    return env


def test_async_generators_get_the_gpus_the_launcher_did_not_give_to_ranks(monkeypatch):
    import torch

    from fastdapo.launch import launch_env
    from fastdapo.rollout.generator_layout import NODE_GPUS, node_gpus, trainer_slots
    from fastdapo.training.async_rollout import generator_placement_here

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,6,7")  # the node as the user hands it over
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)  # torchrun's name, left by other tests; not DeepSpeed's
    env = launch_env()
    assert env[NODE_GPUS] == "2,3,6,7"
    slots = trainer_slots(node_gpus(env, 0), 2)
    (cmd,) = build_commands([], num_procs=2, slots=slots)
    assert world(cmd) == {"node0": [2, 3]}
    trainers, generators = [], []
    for r in (0, 1):
        rank = _rank_env(env, slots, r)
        trainers.append(rank["CUDA_VISIBLE_DEVICES"].split(",")[r])  # the rank trains on cuda:LOCAL_RANK
        with monkeypatch.context() as m:
            for k, v in rank.items():
                m.setenv(k, v)
            m.setattr(torch.cuda, "device_count", lambda: len(slots))
            generators.append(generator_placement_here(torch.device("cuda", r)).visible_devices)
    assert trainers == ["2", "3"] and generators == ["6", "7"]
    # what a rank alone sees once DeepSpeed narrowed it: only its trainer GPUs, so the list must be handed on
    narrowed = {k: v for k, v in _rank_env(env, slots, 0).items() if k != NODE_GPUS}
    assert node_gpus(narrowed, 2) == ["2", "3"]
