"""Overlong Reward Shaping (DAPO eq. 13): a soft length penalty inside the last `buffer` tokens."""

from __future__ import annotations


def overlong_penalty(length: int, max_length: int, buffer: int, factor: float = 1.0) -> float:
    """0 up to max_length - buffer, then linear down to -factor at max_length, -factor beyond."""
    expected = max_length - buffer
    if length <= expected:
        return 0.0
    if length <= max_length:
        return factor * (expected - length) / buffer
    return -factor
