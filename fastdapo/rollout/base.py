"""Rollout engine contract: prompts in, grouped generations out."""
from __future__ import annotations

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
    prompt_index: int          # index into the prompt list given to generate()
    prompt_ids: list[int]
    response_ids: list[int]    # includes the EOS token when one was produced
    text: str                  # decoded response, special tokens removed
    truncated: bool            # stopped by max_new_tokens, not by EOS


def to_generation(tokenizer, idx: int, prompt: list[int], row: list[int]) -> Generation:
    """A sampled row (pad after EOS) -> Generation: the response ends at the first EOS, included."""
    eos = tokenizer.eos_token_id
    if eos in row:
        resp, truncated = row[: row.index(eos) + 1], False
    else:
        resp, truncated = row, True
    text = tokenizer.decode(resp, skip_special_tokens=True)
    return Generation(prompt_index=idx, prompt_ids=list(prompt), response_ids=resp, text=text, truncated=truncated)


class RolloutEngine(ABC):
    """Generates `n` samples per prompt; samples of one prompt are contiguous in the output."""

    @abstractmethod
    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 seeds: list[int] | None = None) -> list[Generation]:
        """`seeds` (one per prompt) makes each group's samples independent of batching and world size."""

    def update_weights(self, model: torch.nn.Module) -> None:
        """Push the trainer's current weights into the engine (no-op when it shares them)."""
