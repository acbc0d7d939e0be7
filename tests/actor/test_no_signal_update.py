"""A mini-batch without gradient signal (every loss token's advantage is 0) applies no optimizer step: the
weights, Adam's moments, the step count and the LR schedule stay as they were. An optimizer step on the zero
gradient would still move the weights (AdamW's decay and the moments of earlier steps)."""

import pytest
import torch

from fastdapo.actor.actor import Actor
from fastdapo.actor.ds_engine import build_ds_engine
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.algorithm.sequences import Sequence
from fastdapo.config import load_config
from fastdapo.packing.packer import build_packer
from fastdapo.runtime import distributed as D
from fastdapo.toy.model import tiny_qwen2

VOCAB = 48


def sequences(advantage, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(3, VOCAB, (10,), generator=g)
        mask = torch.zeros(10, dtype=torch.bool)
        mask[3:9] = True
        adv = torch.full((10,), float(advantage(i)))
        out.append(Sequence(ids, mask, advantages=adv, old_logprobs=-torch.rand(10, generator=g) * 4))
    return out


def build_actor(stage: int) -> Actor:
    D.init_distributed(torch.device("cpu"), "gloo")
    cfg = load_config(overrides=["optimizer.lr=1e-2", "optimizer.warmup_steps=0", "optimizer.weight_decay=0.1"])
    cfg.distributed.zero_stage = stage
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    engine = build_ds_engine(PolicyWithLoss(model, LossSettings(impl="torch")), cfg, torch.float32, torch.device("cpu"))
    return Actor(engine, build_packer(64, model.config._attn_implementation, False), torch.device("cpu"))


def state(actor: Actor) -> dict:
    """Weights, optimizer moments and counters, copied."""
    base = getattr(actor.engine.optimizer, "optimizer", actor.engine.optimizer)
    moments = [{k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for s in base.state.values()]
    return {
        "weights": {n: p.detach().clone() for n, p in actor.policy.named_parameters()},
        "moments": moments,
        "steps": actor.engine.global_steps,
        "lr": actor.engine.get_lr()[0],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    assert a["steps"] == b["steps"] and a["lr"] == b["lr"]
    assert len(a["moments"]) == len(b["moments"])
    for x, y in zip(a["moments"], b["moments"]):
        for k in x:
            assert torch.equal(x[k], y[k]) if torch.is_tensor(x[k]) else x[k] == y[k], k


@pytest.mark.parametrize("stage", [0, 2])
def test_a_minibatch_without_signal_leaves_weights_and_optimizer_untouched(stage):
    actor = build_actor(stage)
    actor.update(sequences(lambda i: (-1) ** i), [0, 0, 1, 1], [[{0, 1}]])  # a real update: moments are set
    before = state(actor)
    # zero advantages, and a non-zero one only on tokens outside the loss mask: no signal either way
    quiet = sequences(lambda i: 0.0, seed=1)
    quiet[0].advantages[:3] = 5.0
    stats = actor.update(quiet, [0, 0, 1, 1], [[{0}, {1}]])
    assert_same(state(actor), before)
    summary = stats.summary()
    assert summary["train/updates"] == 0 and summary["train/no_signal_minibatches"] == 2
    assert summary["loss"] == 0.0 and summary["grad_norm"] == 0.0 and summary["entropy/mean"] > 0  # still measured


def test_one_token_with_a_non_zero_advantage_is_signal():
    seqs = sequences(lambda i: 0.0)
    assert not Actor.has_gradient_signal(seqs)
    seqs[2].advantages[5] = 1e-6
    assert Actor.has_gradient_signal(seqs)
