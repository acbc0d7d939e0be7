"""Ulysses sequence parallelism end to end: `fastdapo launch` with distributed.sequence_parallel_size on CPU."""

import subprocess
import sys

import pytest
from toy_run import args, assert_same_trajectory, assert_same_weights, cli, env, final_weights, free_port, metrics

SP = {"toy.heads": 4, "toy.hidden_size": 32}  # 4 attention heads, 2 key/value heads: S = 2 divides both


def launch(out, cache, procs: int, **extra):
    return cli(
        "launch", "--num-procs", str(procs), "--master-port", str(free_port()), *args(out, cache, **{**SP, **extra})
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("sp")
    cache, out = root / "cache", root / "single"
    proc = cli("train", *args(out, cache, **SP))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, cache, metrics(out), final_weights(out)


def test_two_ranks_of_one_sequence_group_follow_one_process(single):
    """One data-parallel group of two ranks: the same rollouts (seeded per prompt), every row split in two."""
    root, cache, ref, ref_weights = single
    out = root / "sp2"
    proc = launch(out, cache, 2, **{"distributed.sequence_parallel_size": 2})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sequence parallel 2" in proc.stdout + proc.stderr
    got = metrics(out)
    assert len(got) == 3 and any(m["loss"] != 0 for m in got)
    assert_same_trajectory(got, ref)
    assert_same_weights(final_weights(out), ref_weights)


def test_two_sequence_groups_train_and_resume_only_in_their_layout(single):
    """4 processes, S = 2: two data-parallel groups, ZeRO-3. The checkpoint resumes in its own layout and is
    refused, in one line and with nothing written, under another sequence-parallel size."""
    root, cache, ref, _ = single
    out = root / "sp4"
    proc = launch(out, cache, 4, **{"distributed.sequence_parallel_size": 2, "distributed.zero_stage": 3})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = metrics(out)
    assert [m["step"] for m in got] == [1, 2, 3]
    assert all(abs(m["loss"]) < 1e3 and m["grad_norm"] == m["grad_norm"] for m in got)
    assert_same_trajectory(got, ref)  # same prompts, seeds and kept groups: two groups add up to one
    before = (out / "metrics.jsonl").read_text()

    refused = launch(out, cache, 4, **{"distributed.zero_stage": 3, "run.steps": 4})
    assert refused.returncode != 0
    text = refused.stdout + refused.stderr
    assert "saved with distributed.sequence_parallel_size=2" in text and "nothing was written" in text, text[-3000:]
    assert (out / "metrics.jsonl").read_text() == before

    more = launch(
        out, cache, 4, **{"distributed.sequence_parallel_size": 2, "distributed.zero_stage": 3, "run.steps": 4}
    )
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "procs, extra, message",
    [
        (2, {"distributed.sequence_parallel_size": 3}, "sequence_parallel_size=3 does not divide the 2 process(es)"),
        (2, {"distributed.sequence_parallel_size": 2, "toy.heads": 2}, "does not divide the 1 key/value heads"),
    ],
)
def test_refused_at_load_in_one_line(single, procs, extra, message):
    root, cache, _, _ = single
    out = root / f"refused-{len(message)}"
    proc = launch(out, cache, procs, **extra)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert message in text, text[-3000:]
    assert "Traceback" not in text
    assert not (out / "metrics.jsonl").exists()


def test_an_attention_with_a_row_mask_is_refused_by_the_config():
    proc = cli("train", "--dry-run", "--set", "distributed.sequence_parallel_size=2",
               "--set", "model.attn_implementation=sdpa")  # fmt: skip
    assert proc.returncode != 0
    assert "needs model.attn_implementation packed_sdpa, flash_attention_2 or auto, not sdpa" in proc.stderr


def test_lora_under_sequence_parallelism_follows_one_process(single):
    root, cache, _, _ = single
    lora = {"model.lora.rank": 4, "model.lora.alpha": 8, "optimizer.lr": 1e-2}
    one = cli("train", *args(root / "lora1", cache, **SP, **lora))
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(root / "lora-sp2", cache, 2, **{"distributed.sequence_parallel_size": 2, **lora})
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert_same_trajectory(metrics(root / "lora-sp2"), metrics(root / "lora1"))


def test_a_sequence_group_across_two_nodes(single):
    """Two simulated nodes of one process each: the group's all-to-all crosses the nodes."""
    root, cache, ref, _ = single
    out, port = root / "sp-nodes", free_port()
    common = ["--nnodes", "2", "--num-procs", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    extra = args(out, cache, **SP, **{"distributed.sequence_parallel_size": 2})
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "fastdapo.cli", "launch", *common, "--node-rank", str(r), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=400)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert_same_trajectory(metrics(out), ref)
