import pytest
import torch

from fastdapo.algorithm.advantage import group_advantages
from fastdapo.algorithm.overlong import overlong_penalty


def test_group_advantages_match_formula_per_group():
    r = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    a = group_advantages(r, 4)
    g = r[:4]
    expected = (g - g.mean()) / (g.std() + 1e-6)
    assert torch.allclose(a[:4], expected, atol=1e-6)
    assert torch.equal(a[4:], torch.zeros(4))  # identical rewards: no signal
    assert abs(float(a[:4].sum())) < 1e-5  # zero-mean within the group


def test_group_advantages_reject_ragged_groups():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.ones(4), 3)


@pytest.mark.parametrize(
    "length, expected",
    [
        (0, 0.0),
        (12, 0.0),  # up to L_max - L_cache: no penalty
        (13, -0.25),
        (14, -0.5),
        (16, -1.0),  # inside the buffer: linear
        (17, -1.0),
        (100, -1.0),  # past L_max
    ],
)
def test_overlong_penalty_soft_punishment(length, expected):
    assert overlong_penalty(length, max_length=16, buffer=4) == pytest.approx(expected)


def test_overlong_penalty_factor_scales():
    assert overlong_penalty(14, 16, 4, factor=0.5) == pytest.approx(-0.25)
