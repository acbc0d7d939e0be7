"""The weight stream names every checkpoint tensor (tied head included) and keeps its pieces bounded."""

import torch

from fastdapo.rollout.weight_stream import named_weights, param_groups
from tests.rollout.rollout_models import tiny_model


def test_tied_head_is_streamed_under_its_own_name():
    model = tiny_model(40, tied=True)
    names = dict(named_weights(model))
    assert "lm_head.weight" in names and "lm_head.weight" not in dict(model.named_parameters())
    assert names["lm_head.weight"] is not None
    assert set(names) == set(model.state_dict()) - {k for k in model.state_dict() if "rotary" in k}
    torch.testing.assert_close(names["lm_head.weight"], model.lm_head.weight, rtol=0, atol=0)


def test_groups_stay_under_the_chunk_size():
    model = tiny_model(40, tied=False)
    chunk = 64 * 64 * 4  # one square projection's bytes
    groups = param_groups(model, chunk)
    assert len(groups) > 4
    for g in groups:
        size = sum(p.numel() * p.element_size() for p, _ in g)
        assert size <= chunk or len(g) == 1
    assert sum(len(ns) for g in groups for _, ns in g) == len(list(model.named_parameters(remove_duplicate=False)))
