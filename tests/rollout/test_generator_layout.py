"""Where each rank's generator runs: on a GPU machine, a GPU of its own after the node's trainer GPUs, and only
that GPU visible to it (the layout is pure arithmetic on the visible ids, so it is checked here without GPUs)."""

import pytest

from fastdapo.rollout.generator_layout import (
    NODE_GPUS,
    Placement,
    generator_placement,
    node_gpus,
    trainer_slots,
    visible_gpus,
)
from fastdapo.rollout.generator_process import GeneratorError


def test_on_cpu_the_generator_shares_the_cpu():
    assert generator_placement("cpu", 1, 2, []) == Placement("cpu", None)


@pytest.mark.parametrize("rank, gpu", [(0, "4"), (1, "5"), (3, "7")])
def test_each_rank_gets_the_gpu_after_all_trainer_gpus(rank, gpu):
    assert generator_placement(f"cuda:{rank}", rank, 4, visible_gpus({}, 8)) == Placement("cuda:0", gpu)


def test_ids_follow_the_visible_devices_the_node_was_given():
    visible = visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3, 6,7"}, 4)
    assert visible == ["2", "3", "6", "7"]
    assert [generator_placement(f"cuda:{r}", r, 2, visible).visible_devices for r in (0, 1)] == ["6", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, 2) == ["GPU-aa", "GPU-bb"]  # UUIDs pass through


def test_too_few_gpus_is_refused_in_one_line():
    with pytest.raises(GeneratorError) as e:
        generator_placement("cuda:2", 2, 3, visible_gpus({}, 4))
    msg = str(e.value)
    assert "\n" not in msg
    assert "3 trainer process(es) on this node need 6 GPUs and 4 are visible" in msg
    assert "at most 2 process(es) per node (fastdapo launch --num-procs) or set rollout.max_staleness=0" in msg


def test_the_node_list_a_launcher_handed_on_wins_over_the_narrowed_view():
    env = {"CUDA_VISIBLE_DEVICES": "0,1", NODE_GPUS: "0,1,2,3"}
    assert node_gpus(env, 2) == ["0", "1", "2", "3"]
    assert node_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, 2) == ["0", "1"]


@pytest.mark.parametrize(
    "gpus, procs, slots",
    [(["4", "5", "6", "7"], 2, [4, 5]), (["0"], 2, None), (["GPU-aa", "GPU-bb"], 1, None)],
)
def test_trainer_slots_are_the_first_node_gpus_when_they_are_indices(gpus, procs, slots):
    assert trainer_slots(gpus, procs) == slots
