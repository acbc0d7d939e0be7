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
    response_ids: list[int]  # includes the EOS token when one was produced
    text: str  # decoded response, special tokens removed
    truncated: bool  # stopped by max_new_tokens, not by EOS
    # Per response token, log-prob of the sampled token under the distribution it was drawn from
    # (logits / temperature, renormalised over the top-p nucleus); None when the engine did not record them.
    logprobs: list[float] | None = None


class RolloutConfigError(ValueError):
    """A rollout setting that cannot work (raised at engine construction); its message is one line."""


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
    tokenizer, idx: int, prompt: list[int], row: list[int], row_logprobs: list[float] | None = None
) -> Generation:
    """A sampled row (pad after EOS) -> Generation: the response ends at the first EOS, included."""
    eos = tokenizer.eos_token_id
    if eos in row:
        resp, truncated = row[: row.index(eos) + 1], False
    else:
        resp, truncated = row, True
    text = tokenizer.decode(resp, skip_special_tokens=True)
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
