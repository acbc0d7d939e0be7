"""Rollouts with Hugging Face `generate`: the engine that runs everywhere (CPU included)."""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from fastdapo.rollout.base import (
    Generation,
    RolloutEngine,
    SamplingParams,
    generation_mode,
    left_pad,
    model_stop_token_ids,
    to_generation,
)


class LogprobRecorder(LogitsProcessor):
    """Placed after the warpers, it sees each step's final scores; the token sampled from them shows up in
    the next call's input_ids, so only one step of log-probs is held at a time."""

    def __init__(self):
        self.prev: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def _take(self, ids: torch.Tensor) -> None:
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, ids[:, -1:]).squeeze(1).float())

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._take(input_ids)
        self.prev = scores.float().log_softmax(dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, steps] log-probs of the sampled tokens, given the final sequences."""
        self._take(sequences)
        return torch.stack(self.steps, dim=1)


class HFEngine(RolloutEngine):
    """Shares the actor's parameters, so weight sync is free."""

    def __init__(self, model, tokenizer, batch_size: int = 256, gather_context=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.stop_ids = model_stop_token_ids(model, tokenizer)
        # Under ZeRO-3 the trainer passes a context that gathers the sharded parameters.
        self.gather_context = gather_context or contextlib.nullcontext

    def _gen_config(self, params: SamplingParams) -> GenerationConfig:
        # Temperature and top-p are passed as explicit processors (see _processors); every other warper is off
        # explicitly (top_k 0: transformers' own default is 50), and generate() runs with a neutral model
        # generation config (see _neutral_model_config), so nothing is filled in from the model's.
        return GenerationConfig(
            do_sample=params.temperature > 0,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            # every stop id, so generate pads after any of them, as to_generation expects
            eos_token_id=self.stop_ids or None,
        )

    @contextlib.contextmanager
    def _neutral_model_config(self):
        """transformers fills what a generation config leaves unset, and what it sets to a global default
        value, from the model's own generation config (an Instruct model's temperature, top-p, top-k): the
        responses would then be drawn from a narrower distribution than the one whose log-probs are recorded."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model  # PEFT
        saved = model.generation_config
        model.generation_config = GenerationConfig(
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.stop_ids or None
        )
        try:
            yield
        finally:
            model.generation_config = saved

    @staticmethod
    def _processors(params: SamplingParams) -> tuple[LogitsProcessorList, LogprobRecorder]:
        """HF's own order (temperature, then nucleus), with the recorder last so it sees the sampled-from scores."""
        procs, rec = LogitsProcessorList(), LogprobRecorder()
        if params.temperature > 0:
            if params.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                procs.append(TopPLogitsWarper(params.top_p))
        procs.append(rec)
        return procs, rec

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], params: SamplingParams, seeds: list[int] | None = None
    ) -> list[Generation]:
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
        with generation_mode(self.model, self.gather_context), self._neutral_model_config():
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                ids, att = left_pad([p for _, p in chunk], self.tokenizer.pad_token_id)
                procs, rec = self._processors(params)
                seqs = self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=att.to(device),
                    generation_config=gen_cfg,
                    logits_processor=procs,
                )
                lps = rec.finish(seqs).tolist()
                for (idx, p), row, lp in zip(chunk, seqs[:, ids.shape[1] :].tolist(), lps):
                    out.append(to_generation(self.tokenizer, self.stop_ids, idx, p, row, lp))
        return out
