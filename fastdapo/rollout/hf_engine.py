"""Rollouts with Hugging Face `generate`: the engine that runs everywhere (CPU included)."""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from transformers import GenerationConfig

from fastdapo.rollout.base import (Generation, RolloutEngine, SamplingParams, generation_mode, left_pad,
                                   to_generation)


class HFEngine(RolloutEngine):
    """Shares the actor's parameters, so weight sync is free."""

    def __init__(self, model, tokenizer, batch_size: int = 256, gather_context=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Under ZeRO-3 the trainer passes a context that gathers the sharded parameters.
        self.gather_context = gather_context or contextlib.nullcontext

    def _gen_config(self, params: SamplingParams) -> GenerationConfig:
        greedy = params.temperature <= 0
        return GenerationConfig(
            do_sample=not greedy, temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p, top_k=None if greedy else 0,
            max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 seeds: list[int] | None = None) -> list[Generation]:
        if seeds is not None:  # one seeded call per prompt: reproducible whatever else is generated
            out = []
            for i, (p, seed) in enumerate(zip(prompts, seeds)):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    out += [dataclasses.replace(g, prompt_index=i) for g in self.generate([p], params)]
            return out
        jobs = [(i, p) for i, p in enumerate(prompts) for _ in range(params.n)]
        gen_cfg = self._gen_config(params)
        device = next(self.model.parameters()).device
        out: list[Generation] = []
        with generation_mode(self.model, self.gather_context):
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start:start + self.batch_size]
                ids, att = left_pad([p for _, p in chunk], self.tokenizer.pad_token_id)
                seqs = self.model.generate(input_ids=ids.to(device), attention_mask=att.to(device),
                                           generation_config=gen_cfg)
                for (idx, p), row in zip(chunk, seqs[:, ids.shape[1]:].tolist()):
                    out.append(to_generation(self.tokenizer, idx, p, row))
        return out
