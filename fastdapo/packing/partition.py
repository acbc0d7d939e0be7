"""Balanced k-way partitioning of items by weight (sequence length).

Used to spread sequences over gradient-accumulation micro-batches and over data-parallel ranks so that
every part carries a similar number of tokens.

The algorithm is the multi-way Karmarkar-Karp largest differencing method: every item (or, in
equal-size mode, every chunk of ``k`` items) starts as a partial partition of ``k`` sums; the two
partial partitions with the largest spread (max sum - min sum) are repeatedly merged by pairing the
largest sum of one with the smallest sum of the other, until one partition is left.

Guarantee (used by the tests): merging never increases the spread beyond the larger of the two merged
spreads, and every starting partition has spread <= the largest item, so the final max-min spread of
the part sums is <= max(lengths). In equal-size mode part sizes differ by at most one.
"""

from __future__ import annotations

import heapq
import itertools

__all__ = ["balanced_partition", "greedy_partition", "part_sums"]

_DUMMY = -1  # placeholder item used to round equal-size chunks up to k items (weight 0, dropped at the end)


def _check(lengths: list[int], k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for x in lengths:
        if x < 0:
            raise ValueError(f"lengths must be non-negative, got {x}")


def balanced_partition(lengths: list[int], k: int, *, equal_size: bool = False) -> list[list[int]]:
    """Split ``range(len(lengths))`` into ``k`` lists with similar ``sum(lengths[i])``.

    Returns exactly ``k`` lists (some may be empty when there are fewer items than parts unless
    ``equal_size``; with ``equal_size`` sizes differ by at most one, so empties only occur when
    ``len(lengths) < k``). Each index appears exactly once; indices inside a part are sorted and parts
    are ordered by decreasing sum (ties broken by smallest first index), so the result is deterministic.
    """
    _check(lengths, k)
    n = len(lengths)
    if k == 1:
        return [list(range(n))]
    if n == 0:
        return [[] for _ in range(k)]

    # Each heap entry is one partial partition: a list of k (sum, members) pairs sorted by decreasing sum.
    # Heap key: -(spread), then a counter for determinism.
    counter = itertools.count()
    heap: list[tuple[int, int, list[tuple[int, list[int]]]]] = []

    def push(parts: list[tuple[int, list[int]]]) -> None:
        parts.sort(key=lambda p: -p[0])
        heapq.heappush(heap, (-(parts[0][0] - parts[-1][0]), next(counter), parts))

    order = sorted(range(n), key=lambda i: (-lengths[i], i))
    if equal_size:
        padded = order + [_DUMMY] * ((-n) % k)
        for c in range(0, len(padded), k):
            chunk = padded[c : c + k]
            push([(lengths[i] if i != _DUMMY else 0, [i] if i != _DUMMY else []) for i in chunk])
    else:
        for i in order:
            push([(lengths[i], [i])] + [(0, []) for _ in range(k - 1)])

    while len(heap) > 1:
        _, _, a = heapq.heappop(heap)
        _, _, b = heapq.heappop(heap)
        # a and b are sorted by decreasing sum: pair the largest of one with the smallest of the other.
        merged = [(a[j][0] + b[k - 1 - j][0], a[j][1] + b[k - 1 - j][1]) for j in range(k)]
        push(merged)

    parts = [sorted(members) for _, members in heap[0][2]]
    sums = [sum(lengths[i] for i in p) for p in parts]
    ranked = sorted(range(k), key=lambda j: (-sums[j], parts[j][0] if parts[j] else n))
    return [parts[j] for j in ranked]


def greedy_partition(lengths: list[int], k: int, *, equal_size: bool = False) -> list[list[int]]:
    """Largest-first greedy (LPT): each item, longest first, goes to the currently lightest part.

    With ``equal_size`` a part that already holds ``ceil(n / k)`` items is closed. Kept as a simple
    reference and fallback; ``balanced_partition`` is usually at least as balanced.
    """
    _check(lengths, k)
    n = len(lengths)
    cap = -(-n // k) if equal_size else n
    # Parts holding floor(n/k) items may only take one more while the number of "full" parts allows it.
    n_big = n - (cap - 1) * k if equal_size and n else k
    sums = [0] * k
    sizes = [0] * k
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(n), key=lambda i: (-lengths[i], i)):
        n_full = sum(1 for s in sizes if s == cap)
        best = None
        for j in range(k):
            if sizes[j] >= cap:
                continue
            if equal_size and sizes[j] == cap - 1 and n_full >= n_big:
                continue
            if best is None or (sums[j], sizes[j]) < (sums[best], sizes[best]):
                best = j
        assert best is not None
        parts[best].append(i)
        sums[best] += lengths[i]
        sizes[best] += 1
    return [sorted(p) for p in parts]


def part_sums(lengths: list[int], parts: list[list[int]]) -> list[int]:
    """Total weight of each part."""
    return [sum(lengths[i] for i in p) for p in parts]
