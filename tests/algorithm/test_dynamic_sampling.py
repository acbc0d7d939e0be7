import logging
import random

from fastdapo.algorithm.dynamic_sampling import Group, collect, minibatch_plan
from fastdapo.algorithm.sequences import build_sequences
from fastdapo.data.records import PromptRecord
from fastdapo.rollout.base import Generation


class Stream:
    def __init__(self):
        self.uid = 0

    def next(self, n):
        out = [
            PromptRecord(prompt=f"p{self.uid + i}", prompt_ids=[1, 2], ground_truth="0", uid=self.uid + i)
            for i in range(n)
        ]
        self.uid += n
        return out


def fake_rollout(pattern):
    """pattern(uid) -> list of accs for that prompt's group."""

    def run(prompts):
        groups = []
        for p in prompts:
            accs = pattern(p.uid)
            gens = [
                Generation(0, p.prompt_ids, [5, 6, 7][: 1 + k % 3], "x", truncated=(k == 0)) for k in range(len(accs))
            ]
            groups.append(Group(prompt=p, generations=gens, scores=[1.0 if a else -1.0 for a in accs], accs=accs))
        return groups

    return run


def test_drops_all_correct_and_all_wrong_groups_and_fills_batch():
    # uid % 3: 0 -> all correct, 1 -> all wrong, 2 -> mixed
    pattern = lambda u: [True] * 4 if u % 3 == 0 else ([False] * 4 if u % 3 == 1 else [True, False, False, True])
    out = collect(Stream().next, fake_rollout(pattern), train_batch_size=5, gen_batch_size=6, max_num_gen_batches=10)
    assert out.gen_batches == 3  # 2 informative per round of 6 -> 3 rounds for 5
    assert len(out.kept) == 5 and not out.exhausted
    assert all(g.informative for g in out.kept)
    assert out.kept_uids == [2, 5, 8, 11, 14]  # the first 5 in stream order; the surplus 17 is dropped
    assert len(out.generated) == 18


def test_filter_uses_accuracy_not_shaped_reward():
    g = Group(prompt=PromptRecord("p", [1], "0"), generations=[], scores=[0.5, -0.3], accs=[True, True])
    assert not g.informative


def test_exhaustion_warns_and_continues_with_what_was_collected(caplog):
    pattern = lambda u: [True, False] if u == 3 else [False, False]
    with caplog.at_level(logging.WARNING):
        out = collect(Stream().next, fake_rollout(pattern), train_batch_size=4, gen_batch_size=4, max_num_gen_batches=2)
    assert out.exhausted and out.gen_batches == 2 and out.kept_uids == [3]
    msg = caplog.text
    assert "1 of 4 wanted informative groups after 2 generation batches" in msg and "8 groups generated" in msg


def test_disabled_keeps_everything_in_one_round():
    out = collect(
        Stream().next,
        fake_rollout(lambda u: [True, True]),
        train_batch_size=3,
        gen_batch_size=9,
        max_num_gen_batches=5,
        enabled=False,
    )
    assert out.gen_batches == 1 and out.kept_uids == [0, 1, 2]


def test_selection_is_global_across_simulated_ranks():
    # Two ranks share one stream; gather concatenates both ranks' uids, as all_gather does.
    pattern = lambda u: [True, False] if u % 2 else [True, True]
    single = collect(Stream().next, fake_rollout(pattern), 3, 4, 10)
    stream = Stream()
    rank_uids = []

    def next_rank0(n):  # rank 0 receives even positions of the global batch
        batch = stream.next(n)
        rank_uids.append([p.uid for p in batch[1::2]])
        return batch[0::2]

    def gather(uids):  # rank 1's candidates are the odd positions seen so far (all informative here)
        return list(uids) + [u for part in rank_uids for u in part]

    r0 = collect(next_rank0, fake_rollout(pattern), 3, 4, 10, gather=gather)
    assert r0.kept_uids == single.kept_uids == [1, 3, 5]


def test_minibatch_plan_partitions_groups_identically_for_same_rng():
    uids = list(range(10))
    a = minibatch_plan(uids, 4, random.Random(7))
    b = minibatch_plan(uids, 4, random.Random(7))
    assert a == b and [len(m) for m in a] == [4, 4, 2] and set().union(*a) == set(uids)


def test_build_sequences_masks_response_and_applies_overlong_filtering():
    p = PromptRecord("p", [1, 2, 3], "0", uid=9)
    gens = [
        Generation(0, [1, 2, 3], [4, 5], "a", truncated=False),
        Generation(0, [1, 2, 3], [6, 7], "b", truncated=True),
    ]
    grp = Group(prompt=p, generations=gens, scores=[1.0, -1.0], accs=[True, False])
    seqs, uids = build_sequences([grp], overlong_filtering=False)
    assert uids == [9, 9]
    assert seqs[0].loss_mask.tolist() == [False, False, True, True, False]  # predicts tokens 4 and 5
    assert seqs[0].advantages[0] > 0 > seqs[1].advantages[0]
    filtered, _ = build_sequences([grp], overlong_filtering=True)
    assert filtered[0].loss_mask.sum() == 2 and filtered[1].loss_mask.sum() == 0  # truncated one is masked
