"""The train-time fidelity probe refuses, in one line, a model whose forward the trainer does not reproduce."""

import pytest
import torch

from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.actor.probe import FidelityError, check_fidelity, split_prompt_groups
from fastdapo.packing.attention import register_attention
from fastdapo.packing.packer import SharedPromptPacker
from tests.actor.arch_models import build

PROMPTS = [list(range(10, 22)), list(range(40, 49)), [5, 6]]


def probe(model):
    attn = register_attention()
    model.set_attn_implementation(attn)
    policy = PolicyWithLoss(model, LossSettings(temperature=0.9, impl="torch"))
    return check_fidelity(policy, model, SharedPromptPacker(1000, attn), PROMPTS, 0.9, "models/x")


def test_groups_come_from_prompts_alone():
    groups = split_prompt_groups(PROMPTS)
    assert [g[0] for g in groups] == [PROMPTS[0][:6], PROMPTS[1][:4]]  # the 2-token prompt is skipped
    assert groups[0][1] == [PROMPTS[0][6:], PROMPTS[1][4:]]


def test_probe_passes_on_an_exact_model_and_leaves_the_rng_alone():
    model = build("granite_logits_scaling")
    state = torch.random.get_rng_state()
    row = probe(model)
    assert row.ok and row.tokens == 2 * (6 + 5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_probe_refuses_an_undeclared_transform():
    model = build("cohere_logit_scale")
    model.config.logit_scale = 1.0  # the head detection is told 1.0; the forward still multiplies by 0.5
    model.logit_scale = 0.5
    with pytest.raises(FidelityError) as e:
        probe(model)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("CohereForCausalLM: the trainer's log-probs differ")
    assert "fastdapo check-model models/x" in msg and "model.check_fidelity=false" in msg
