"""vLLM serves a LoRA actor through its merged weights: after each adapter update the engine's log-probs equal the
adapted model's exactly (the sync test of full fine-tuning)."""

import pytest
import torch

pytest.importorskip("vllm")

from fastdapo.actor.lora import apply_lora, merged_named_weights  # noqa: E402
from fastdapo.config.schema import LoraConfig  # noqa: E402
from fastdapo.rollout.base import SamplingParams  # noqa: E402
from fastdapo.rollout.vllm_engine import VLLMEngine  # noqa: E402
from fastdapo.toy.tokenizer import build_char_tokenizer  # noqa: E402
from tests.rollout.rollout_models import max_logprob_gap, tiny_model  # noqa: E402

TOK = build_char_tokenizer()
PROBE = [TOK(t, add_special_tokens=False)["input_ids"] for t in ["What is 1+2?\n", "Hi\n", "a"]]


@pytest.mark.parametrize("tied", [True, False])
def test_lora_weight_sync_exact_after_each_update(tmp_path, tied):
    base = tiny_model(len(TOK), tied=tied)
    base.save_pretrained(tmp_path)
    TOK.save_pretrained(tmp_path)
    engine = VLLMEngine(str(tmp_path), TOK, seed=0, max_model_len=64, gpu_memory_utilization=0.1)
    try:
        model = apply_lora(tiny_model(len(TOK), tied=tied), LoraConfig(rank=4, alpha=8)).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
        ids = torch.tensor([PROBE[0] + PROBE[1]])
        served = tiny_model(len(TOK), tied=tied, seed=7)  # the engine's copy, as a plain model under base names
        for _ in range(3):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
            served.load_state_dict(dict(merged_named_weights(model)))
            engine.update_weights(served)
            model.eval()
            gens = engine.generate(PROBE, SamplingParams(n=2, temperature=0.8, max_new_tokens=6))
            assert max_logprob_gap(model, gens, 0.8) <= 1e-4
            assert max_logprob_gap(tiny_model(len(TOK), tied=tied), gens, 0.8) > 1e-3  # the adapters moved it
            model.train()
    finally:
        engine.close()
