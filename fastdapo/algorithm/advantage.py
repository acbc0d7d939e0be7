"""Group-relative advantages (GRPO/DAPO): A_i = (R_i - mean(R)) / (std(R) + eps)."""

from __future__ import annotations

import torch

EPS = 1e-6


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """`rewards` is [num_groups * group_size] with each group's samples contiguous.

    Uses the unbiased std like verl; a group whose rewards are all equal gets zero advantage.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.double().view(-1, group_size)
    std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(r[:, :1])
    return ((r - r.mean(dim=1, keepdim=True)) / (std + EPS)).view(-1).float()
