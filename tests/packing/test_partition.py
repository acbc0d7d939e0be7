import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdapo.packing.partition import balanced_partition, greedy_partition, part_sums

lengths_st = st.lists(st.integers(min_value=0, max_value=2000), min_size=0, max_size=60)
k_st = st.integers(min_value=1, max_value=12)
FAST = settings(max_examples=150, deadline=None)


def _check_cover(parts, n, k):
    assert len(parts) == k
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(n))


@FAST
@given(lengths_st, k_st)
def test_balanced_partition_covers_and_bounds_spread(lengths, k):
    parts = balanced_partition(lengths, k)
    _check_cover(parts, len(lengths), k)
    sums = part_sums(lengths, parts)
    assert max(sums) - min(sums) <= max(lengths, default=0)


@FAST
@given(lengths_st, k_st)
def test_balanced_partition_equal_size(lengths, k):
    parts = balanced_partition(lengths, k, equal_size=True)
    _check_cover(parts, len(lengths), k)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    sums = part_sums(lengths, parts)
    assert max(sums) - min(sums) <= max(lengths, default=0)


@FAST
@given(lengths_st, k_st, st.booleans())
def test_greedy_partition(lengths, k, equal_size):
    parts = greedy_partition(lengths, k, equal_size=equal_size)
    _check_cover(parts, len(lengths), k)
    sums = part_sums(lengths, parts)
    if equal_size:
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    else:
        assert max(sums) - min(sums) <= max(lengths, default=0)


@FAST
@given(st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=40), k_st)
def test_positive_items_fill_every_part(lengths, k):
    parts = balanced_partition(lengths, k)
    assert sum(1 for p in parts if p) == min(k, len(lengths))


@pytest.mark.parametrize(
    "lengths,k,best_spread",
    [
        ([8, 7, 6, 5, 4], 2, 0),  # {8,7} vs {6,5,4}: 15 / 15
        ([4, 5, 6, 7, 8], 2, 0),
        ([10, 10, 10, 10], 4, 0),
        ([3, 3, 2, 2, 2], 2, 0),
        ([100, 1, 1, 1], 2, 97),
        ([5, 5, 4, 3, 3], 3, 3),  # {5,3} {4,3} {5}
    ],
)
def test_balanced_partition_table(lengths, k, best_spread):
    parts = balanced_partition(lengths, k)
    _check_cover(parts, len(lengths), k)
    sums = part_sums(lengths, parts)
    assert max(sums) - min(sums) <= best_spread + 2  # optimum + small heuristic slack


def test_deterministic_and_sorted():
    lengths = [5, 3, 9, 1, 7, 7, 2]
    a = balanced_partition(lengths, 3)
    assert a == balanced_partition(lengths, 3)
    assert all(p == sorted(p) for p in a)
    sums = part_sums(lengths, a)
    assert sums == sorted(sums, reverse=True)


def test_bad_k():
    with pytest.raises(ValueError):
        balanced_partition([1, 2], 0)
    with pytest.raises(ValueError):
        balanced_partition([1, -2], 2)
