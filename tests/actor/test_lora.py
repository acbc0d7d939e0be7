"""LoRA actor: config validation, only adapters train, the frozen LM head costs no weight gradient, and the
merged-weight stream equals PEFT's own merge."""

import pytest
import torch

import fastdapo_kernels.torch_chunked as chunked
from fastdapo.actor.actor import Actor
from fastdapo.actor.ds_engine import build_ds_engine
from fastdapo.actor.lora import apply_lora, is_lora, merged_named_weights
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.algorithm.sequences import Sequence
from fastdapo.config import load_config
from fastdapo.config.schema import LoraConfig
from fastdapo.packing.packer import build_packer
from fastdapo.runtime import distributed as D
from fastdapo.toy.model import tiny_qwen2

VOCAB = 48


def test_lora_keys_set_from_the_command_line():
    cfg = load_config(overrides=["model.lora.rank=8", "model.lora.alpha=32", "model.lora.target_modules=q_proj,v_proj"])
    assert (cfg.model.lora.rank, cfg.model.lora.alpha) == (8, 32.0)
    assert cfg.model.lora.target_modules == ["q_proj", "v_proj"]
    assert load_config().model.lora.rank == 0


def test_rank_zero_leaves_the_model_alone():
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    assert apply_lora(model, LoraConfig(rank=0)) is model and not is_lora(model)


def test_only_adapters_train_and_the_head_stays_a_plain_linear():
    model = apply_lora(tiny_qwen2(VOCAB, 32, 2, 4, seed=3), LoraConfig(rank=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert type(model.get_output_embeddings()) is torch.nn.Linear
    assert not model.get_output_embeddings().weight.requires_grad
    adapted = {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_A." in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


LINEAR = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"


@pytest.mark.parametrize(
    "targets, expected",
    [
        (
            ["qproj"],
            f"model.lora.target_modules: 'qproj' matches no module of Qwen2ForCausalLM; its linear layers: {LINEAR}",
        ),
        (
            ["q_proj", "attn.v", "all-linear"],  # partial misses too: PEFT would adapt q_proj alone, silently
            "model.lora.target_modules: 'attn.v', 'all-linear' match no module of Qwen2ForCausalLM; "
            f"its linear layers: {LINEAR}",
        ),
    ],
)
def test_target_modules_naming_no_module_are_one_line(targets, expected):
    from fastdapo.config import ConfigError

    with pytest.raises(ConfigError) as e:
        apply_lora(tiny_qwen2(VOCAB, 32, 2, 4, seed=3), LoraConfig(rank=4, target_modules=targets))
    assert str(e.value) == expected


def test_target_modules_by_short_or_full_name_and_unsupported_layers():
    from fastdapo.config import ConfigError

    model = apply_lora(
        tiny_qwen2(VOCAB, 32, 2, 4, seed=3), LoraConfig(rank=4, target_modules=["q_proj", "model.layers.0.mlp.up_proj"])
    )
    adapted = {n.split(".lora_A.")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted == {
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.0.mlp.up_proj",
    }
    with pytest.raises(ConfigError) as e:
        apply_lora(tiny_qwen2(VOCAB, 32, 2, 4, seed=3), LoraConfig(rank=4, target_modules=["mlp", "q"]))
    assert str(e.value) == (
        "model.lora.target_modules: 'q' matches no module of Qwen2ForCausalLM; 'mlp' names Qwen2MLP, not a layer "
        f"LoRA can adapt; its linear layers: {LINEAR}"
    )


def sequences(n=6):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(3, VOCAB, (10,), generator=g)
        mask = torch.zeros(10, dtype=torch.bool)
        mask[3:9] = True
        out.append(
            Sequence(
                ids,
                mask,
                advantages=torch.full((10,), float(torch.randn(1, generator=g))),
                old_logprobs=-torch.rand(10, generator=g) * 4,
            )
        )
    return out


@pytest.mark.parametrize("checkpointing", [False, True])
def test_frozen_head_gets_no_weight_gradient(monkeypatch, checkpointing):
    seen = []
    real = chunked.loss_forward

    def spy(hidden, weight, bias, targets, inputs, head, need, *a, **k):
        seen.append(dict(need))
        return real(hidden, weight, bias, targets, inputs, head, need, *a, **k)

    monkeypatch.setattr(chunked, "loss_forward", spy)
    D.init_distributed(torch.device("cpu"), "gloo")
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    if checkpointing:  # as the workspace builds it: checkpointing first, then the adapters
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = apply_lora(model, LoraConfig(rank=4))
    cfg = load_config()
    cfg.distributed.zero_stage = 0
    engine = build_ds_engine(PolicyWithLoss(model, LossSettings(impl="torch")), cfg, torch.float32, torch.device("cpu"))
    assert sum(p.numel() for g in engine.optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    actor = Actor(engine, build_packer(64, model.config._attn_implementation, False), torch.device("cpu"))
    actor.accumulate_gradients(sequences())
    assert seen and all(n["dh"] and not n["dw"] for n in seen)
    assert model.lm_head.weight.grad is None
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert all(p.grad is not None for p in lora_b) and any(p.grad.abs().sum() > 0 for p in lora_b)


def test_merged_weights_equal_peft_merge_under_plain_names():
    base = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    names = {n for n, _ in base.named_parameters(remove_duplicate=False)}
    model = apply_lora(base, LoraConfig(rank=4, alpha=8))
    for n, p in model.named_parameters():
        if ".lora_B." in n:
            torch.nn.init.normal_(p)  # PEFT starts B at zero: the merge would be the identity
    ids = torch.randint(0, VOCAB, (2, 9))
    adapted = model(input_ids=ids).logits
    merged = dict(merged_named_weights(model))
    assert set(merged) == names
    plain = tiny_qwen2(VOCAB, 32, 2, 4, seed=4)
    plain.load_state_dict(merged)
    torch.testing.assert_close(plain(input_ids=ids).logits, adapted, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tiny_qwen2(VOCAB, 32, 2, 4, seed=3)(input_ids=ids).logits, adapted)
