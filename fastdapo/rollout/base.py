"""Rollout engine contract: prompts in, grouped generations out."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64


@dataclass
class Generation:
    prompt_index: int  # index into the prompt list given to generate()
    prompt_ids: list[int]
    response_ids: list[int]  # includes the stop token (see stop_token_ids) when one was produced
    text: str  # decoded response without its stop token (as vLLM does), special tokens removed
    truncated: bool  # stopped by max_new_tokens, not by a stop token
    # Per response token, log-prob of the sampled token under the distribution it was drawn from
    # (logits / temperature, renormalised over the top-p nucleus); None when the engine did not record them.
    logprobs: list[float] | None = None


class RolloutConfigError(ValueError):
    """A rollout setting that cannot work (raised at engine construction); its message is one line."""


def stop_token_ids(config_eos: int | list[int] | None, tokenizer) -> list[int]:
    """The one stop rule of every engine: each EOS id of the model's generation config (chat models list their
    end-of-turn token there, e.g. Qwen2.5-Instruct's <|im_end|> beside <|endoftext|>) plus the tokenizer's EOS,
    in that order, without duplicates. A response ends at the first of them, which it keeps."""
    ids = [config_eos] if isinstance(config_eos, int) else list(config_eos or [])
    eos = getattr(tokenizer, "eos_token_id", None)
    return list(dict.fromkeys([*ids, *([] if eos is None else [eos])]))


def model_stop_token_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    """stop_token_ids from the model object's generation config (loaded from its directory's
    generation_config.json, or derived from config.json when there is none)."""
    return stop_token_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer)


@contextlib.contextmanager
def generation_mode(model: torch.nn.Module, gather_context):
    """Eval mode (no dropout) under the engine's gather context (ZeRO-3), training mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with gather_context():
            yield
    finally:
        model.train(was_training)


def left_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> ``[B, W]`` ids and attention mask, left-padded so every prompt ends in the last column."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    att = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        att[row, width - len(p) :] = 1
    return ids, att


def to_generation(
    tokenizer,
    stop_ids: list[int],
    idx: int,
    prompt: list[int],
    row: list[int],
    row_logprobs: list[float] | None = None,
) -> Generation:
    """A sampled row (pad after its stop token) -> Generation: the response ends at the first stop id, included."""
    stops = set(stop_ids)
    end = next((t for t, tok in enumerate(row) if tok in stops), None)
    resp, truncated = (row, True) if end is None else (row[: end + 1], False)
    text = tokenizer.decode(resp if truncated else resp[:-1], skip_special_tokens=True)
    lp = None if row_logprobs is None else row_logprobs[: len(resp)]
    return Generation(
        prompt_index=idx, prompt_ids=list(prompt), response_ids=resp, text=text, truncated=truncated, logprobs=lp
    )


class RolloutEngine(ABC):
    """Generates `n` samples per prompt; samples of one prompt are contiguous in the output."""

    @abstractmethod
    def generate(
        self, prompts: list[list[int]], params: SamplingParams, seeds: list[int] | None = None
    ) -> list[Generation]:
        """`seeds` (one per prompt) makes each group's samples independent of batching and world size."""

    def update_weights(self, model: torch.nn.Module, weights=None) -> None:  # noqa: B027 - a no-op default
        """Push the trainer's current weights into the engine (no-op when it shares them). ``weights``, when
        given, is a callable returning the (name, tensor) stream to send instead of the model's own
        parameters, e.g. LoRA adapters merged into the base weights under the base model's names."""
