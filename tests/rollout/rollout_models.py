"""Tiny random Qwen2 models for the rollout-engine tests, with a teacher-forced log-prob reference."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastdapo.rollout.torch_engine import top_p_filter
from fastdapo.toy.tokenizer import build_char_tokenizer


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


END_OF_TURN = "<|im_end|>"


def chat_tokenizer():
    """The char tokenizer plus a special end-of-turn token that is not its EOS, as in chat models
    (Qwen2.5-Instruct ends a turn at <|im_end|> and lists it in its generation config's eos_token_id)."""
    tok = build_char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [END_OF_TURN]})
    return tok


@torch.no_grad()
def _greedy(model, prompt: list[int], steps: int) -> list[int]:
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


@torch.no_grad()
def end_of_turn_model(tok, ends_at_eot: list[int], ends_at_eos: list[int], step: int = 3, seed: int = 0):
    """Untied tiny model whose generation config lists only the end-of-turn id (not the tokenizer's EOS). Greedy
    decoding of `ends_at_eot` would emit token y at `step`, of `ends_at_eos` token z: the model's end-of-turn row
    becomes 1.05 * y's row and its EOS row 1.05 * z's, so it emits end-of-turn wherever it would emit y (the
    logit of y being the positive maximum), EOS wherever it would emit z. Returns (model, end-of-turn id)."""
    eot = tok.convert_tokens_to_ids(END_OF_TURN)
    model = tiny_model(len(tok), tied=False, seed=seed)
    head = model.lm_head.weight
    head[[eot, tok.eos_token_id]] = 0.0  # neither is emitted before the rows are copied
    y = _greedy(model, ends_at_eot, step)[-1]
    z = _greedy(model, ends_at_eos, step)[-1]
    assert y != z
    head[eot], head[tok.eos_token_id] = 1.05 * head[y], 1.05 * head[z]
    model.generation_config.eos_token_id = [eot]
    return model, eot
