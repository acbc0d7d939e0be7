"""Tiny random causal LMs of common transformers architectures, built in-process (no downloads)."""

from __future__ import annotations

import torch
import transformers

VOCAB = 300
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
MOE = dict(
    num_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=48,
    shared_expert_intermediate_size=48,
    decoder_sparse_step=1,
)

# name -> (config class, extra config kwargs)
ARCHS = {
    "qwen2_tied": ("Qwen2Config", dict(tie_word_embeddings=True)),
    "llama_gqa_untied": ("LlamaConfig", dict(tie_word_embeddings=False)),
    "qwen3_qk_norm": ("Qwen3Config", dict(tie_word_embeddings=False)),
    "qwen2_moe": ("Qwen2MoeConfig", dict(MOE, tie_word_embeddings=False)),
    "phi_head_bias": ("PhiConfig", dict(tie_word_embeddings=False, partial_rotary_factor=0.5)),
    "cohere_logit_scale": ("CohereConfig", dict(logit_scale=0.5)),
    "granite_logits_scaling": (
        "GraniteConfig",
        dict(logits_scaling=4.0, embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.3),
    ),
    "gemma_plain": ("GemmaConfig", {}),
    "gemma2_softcap": (
        "Gemma2Config",
        dict(final_logit_softcapping=5.0, attn_logit_softcapping=10.0, sliding_window=4096),
    ),
    "mistral_sliding": ("MistralConfig", dict(sliding_window=4)),
}


def build(name: str, dtype: torch.dtype = torch.float32, seed: int = 0, **overrides) -> torch.nn.Module:
    cls_name, extra = ARCHS[name]
    kwargs = {**COMMON, **extra, **overrides}
    if cls_name == "PhiConfig":
        kwargs.pop("head_dim")  # Phi derives it from hidden_size / heads
    config = getattr(transformers, cls_name)(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # larger than the default init, so distributions are peaked and errors show
        for pname, p in model.named_parameters():
            if p.dim() == 2 and "norm" not in pname:
                p.normal_(0, 0.15)
            elif pname.endswith("lm_head.bias"):
                p.normal_(0, 2.0)
    return model.to(dtype).eval()
