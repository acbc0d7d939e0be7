"""Every architecture of the matrix either trains exactly (the trainer's per-token log-probs, through
the packer, the attention and the fused LM head that training uses, equal the model's own forward)
or is refused at load with one line naming the model class, what is unsupported and what to do."""

import pytest
import torch

from fastdapo.actor.model_support import check_model_support, choose_attention
from fastdapo.actor.output_head import UnsupportedModelError
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.actor.probe import compare, model_logprobs, probe_sequences, tolerance, trainer_logprobs
from fastdapo.packing.attention import PACKED_SDPA, register_attention
from fastdapo.packing.packed import scatter_back
from fastdapo.packing.packer import PlainPacker, SharedPromptPacker
from tests.actor.arch_models import VOCAB, build

# (prompt length, response lengths) per group
GROUPS = [(5, [4, 7, 1]), (3, [6, 2])]


def groups(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(3, VOCAB, (p,), generator=g).tolist(),
            [torch.randint(3, VOCAB, (r,), generator=g).tolist() for r in rs],
        )
        for p, rs in GROUPS
    ]


def loss_logprobs(policy, packer, seqs):
    """The log-probs the fused loss itself computes (the update pass), and the LM-head parameter grads."""
    policy.zero_grad()
    for i, s in enumerate(seqs):  # non-zero advantages, so every LM-head parameter gets a gradient
        s.advantages = torch.full_like(s.advantages, 1.0 if i % 2 else -0.5)
    mbs = packer.pack(seqs, packer.plan(seqs), 1)
    loss, stats = policy(mbs[0], normalizer=torch.tensor(1.0))
    loss.backward()
    return scatter_back(mbs, [stats["logprobs"]], len(seqs))


def check_exact(model, temperature, attn=PACKED_SDPA, dtype=torch.float32):
    seqs = probe_sequences(groups())
    ref = model_logprobs(model, seqs, temperature)  # eager attention: the model's own definition
    if attn == PACKED_SDPA:
        register_attention(PACKED_SDPA)
    model.set_attn_implementation(attn)
    check_model_support(model, attn, max(len(s) for s in seqs))
    policy = PolicyWithLoss(model, LossSettings(temperature=temperature, impl="torch"))
    for packer in (SharedPromptPacker(1000, attn), PlainPacker(1000, attn)):
        row = compare(type(packer).__name__, trainer_logprobs(policy, packer, seqs), ref, seqs, tolerance(dtype))
        assert row.ok, row
        # the loss pass computes the same log-probs (a packer of one micro-batch: loss_logprobs packs once)
        lrow = compare("loss", loss_logprobs(policy, packer, seqs), ref, seqs, tolerance(dtype))
        assert lrow.ok, lrow
    return policy


@pytest.mark.parametrize(
    "name,temperature",
    [
        ("qwen2_tied", 1.0),
        ("llama_gqa_untied", 0.7),
        ("qwen3_qk_norm", 1.3),
        ("qwen2_moe", 1.0),
        ("phi_head_bias", 0.7),
        ("cohere_logit_scale", 1.0),
        ("granite_logits_scaling", 0.7),
        ("gemma_plain", 1.0),
    ],
)
def test_trainer_logprobs_equal_the_models_forward(name, temperature):
    policy = check_exact(build(name), temperature)
    head = policy.lm_head
    if head.bias is not None:  # the LM-head bias is trained like the rest
        assert head.bias.grad is not None and head.bias.grad.abs().sum() > 0


def test_gemma2_softcap_is_exact_on_the_eager_route():
    model = build("gemma2_softcap")
    # decided from the config before loading (transformers refuses SDPA for Gemma-2 at load)
    assert choose_attention(model.config, "auto", PACKED_SDPA) == "eager"
    check_exact(model, 0.8, attn="eager")


def test_gemma2_attention_softcap_is_refused_on_sdpa():
    model = build("gemma2_softcap")
    model.config.architectures = ["Gemma2ForCausalLM"]  # as in a saved model's config.json
    with pytest.raises(
        UnsupportedModelError,
        match=r"^Gemma2ForCausalLM: attention-logit soft-capping .* "
        r"use model.attn_implementation=eager",
    ):
        choose_attention(model.config, PACKED_SDPA, PACKED_SDPA)  # an explicit choice is refused, not overridden
    with pytest.raises(UnsupportedModelError, match=r"^Gemma2ForCausalLM: attention-logit soft-capping"):
        check_model_support(model, "sdpa", 64)


@pytest.mark.parametrize("name,overrides", [("gemma2_softcap", dict(sliding_window=4)), ("mistral_sliding", {})])
def test_sliding_windows_shorter_than_a_sequence_are_refused(name, overrides):
    model = build(name, **overrides)
    with pytest.raises(UnsupportedModelError) as e:
        check_model_support(model, "eager", max_len=12)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(type(model).__name__ + ": ")
    assert "window 4" in msg and "<= 4" in msg and "flash_attention_2" in msg
    check_model_support(model, "flash_attention_2", max_len=12)  # the varlen kernel applies the window


def test_a_window_no_sequence_exceeds_is_exact_to_ignore():
    model = build("mistral_sliding", sliding_window=64)
    check_exact(model, 1.0)


def test_an_output_layer_that_is_not_a_plain_linear_is_refused():
    model = build("llama_gqa_untied")

    class Wrapped(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    old = model.lm_head
    model.lm_head = Wrapped(old.in_features, old.out_features, bias=False)
    with pytest.raises(UnsupportedModelError, match=r"^LlamaForCausalLM: the output layer is Wrapped"):
        check_model_support(model, PACKED_SDPA, 16)


@pytest.mark.parametrize("name", ["llama_gqa_untied", "phi_head_bias"])
def test_bf16_within_the_looser_bound(name):
    check_exact(build(name, dtype=torch.bfloat16), 1.0, dtype=torch.bfloat16)
