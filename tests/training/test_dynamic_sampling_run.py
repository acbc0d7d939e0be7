"""Dynamic sampling end to end, with the real trainer: resampling rounds until train_batch_size informative groups
are kept, exhaustion of max_num_gen_batches, the gather of kept groups over two ranks (equal to one process), and
a resume in the middle of the prompt stream; and the sample-level loss (seq-mean-token-mean) over two ranks."""

import pytest
from toy_run import args, assert_same_trajectory, assert_same_weights, cli, final_weights, free_port, metrics

# A warm start that answers some problems right: groups of 4 are then mixed or uniform, so the filter drops some
# and each step needs a second generation batch; with at most 2 batches some steps end short (exhausted).
DYNAMIC = {
    "toy.sft_steps": 300,
    "toy.sft_lr": 0.003,
    "toy.sft_format_noise": 0.5,
    "toy.max_operand": 3,
    "toy.eval_size": 8,
    "algorithm.dynamic_sampling": "true",
    "algorithm.max_num_gen_batches": 2,
    "run.steps": 4,
    "run.save_every": 1,
}
FILTER = ("filter/kept_groups", "filter/gen_batches", "filter/exhausted")


def run(out, cache, *launch, **extra):
    proc = cli(*(launch or ("train",)), *args(out, cache, **{**DYNAMIC, **extra}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, metrics(out)


def two_processes():
    return ("launch", "--num-procs", "2", "--master-port", str(free_port()))


def same_filtering(a, b):
    assert [{k: m[k] for k in FILTER} for m in a] == [{k: m[k] for k in FILTER} for m in b]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("dynamic")
    proc, rows = run(root / "single", root / "cache")
    return root, proc, rows


def test_one_process_resamples_and_reports_exhaustion(single):
    _, proc, rows = single
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    assert all(m["filter/gen_batches"] == 2 for m in rows)  # the first batch never held 4 informative groups
    full = [m for m in rows if m["filter/exhausted"] == 0]
    short = [m for m in rows if m["filter/exhausted"] == 1]
    assert full and all(m["filter/kept_groups"] == 4 for m in full)
    assert short and all(0 < m["filter/kept_groups"] < 4 for m in short)
    m = short[0]
    assert f"dynamic sampling: {m['filter/kept_groups']} of 4 wanted informative groups after 2" in proc.stderr
    assert all(m["loss"] != 0 for m in rows)


def test_two_processes_gather_the_same_kept_groups(single):
    root, _, ref = single
    _, rows = run(root / "two", root / "cache", *two_processes())
    same_filtering(rows, ref)
    assert_same_trajectory(rows, ref)
    assert_same_weights(final_weights(root / "two"), final_weights(root / "single"))


def test_resume_mid_stream_continues_the_same_run(single):
    """Stopped after step 2 (an exhausted step: the stream position moved by 2 batches of 4 prompts), then
    resumed to step 4: steps 3 and 4 sample the same prompts, keep the same groups and train the same."""
    root, _, ref = single
    out = root / "resumed"
    run(out, root / "cache", **{"run.steps": 2})
    _, rows = run(out, root / "cache")
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    same_filtering(rows, ref)
    assert_same_trajectory(rows, ref)


def test_sample_level_loss_two_processes_reproduce_one(single):
    root, _, ref = single
    sample = {"algorithm.loss_agg_mode": "seq-mean-token-mean"}
    _, one = run(root / "seq-one", root / "cache", **sample)
    _, two = run(root / "seq-two", root / "cache", *two_processes(), **sample)
    assert_same_trajectory(two, one)
    assert_same_weights(final_weights(root / "seq-two"), final_weights(root / "seq-one"))
    assert one[0]["loss"] != pytest.approx(ref[0]["loss"], rel=1e-3)  # the same samples, another aggregation
