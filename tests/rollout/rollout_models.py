"""Tiny random Qwen2 models for the rollout-engine tests, with a teacher-forced log-prob reference."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastdapo.rollout.torch_engine import top_p_filter


def tiny_model(vocab: int, tied: bool, seed: int = 0, hidden: int = 64) -> Qwen2ForCausalLM:
    """Head size 32 (the smallest vLLM's CPU attention runs); weights large enough that samples vary."""
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=hidden // 32,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        attn_implementation="sdpa",
    )
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model.eval()


@torch.no_grad()
def reference_logprobs(model, gen, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """log-probs of a Generation's response tokens under log_softmax(top_p(logits / T)) of `model`."""
    ids = torch.tensor([gen.prompt_ids + gen.response_ids])
    logits = model(input_ids=ids).logits[0, len(gen.prompt_ids) - 1 : -1].float() / temperature
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return logits.log_softmax(-1).gather(1, torch.tensor(gen.response_ids)[:, None]).squeeze(1)


def max_logprob_gap(model, gens, temperature: float, top_p: float = 1.0) -> float:
    return max(
        (reference_logprobs(model, g, temperature, top_p) - torch.tensor(g.logprobs)).abs().max().item() for g in gens
    )
