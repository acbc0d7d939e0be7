"""Pieces of trainer state that save and load themselves (``state_dict()`` / ``load_state_dict()``).

The checkpointer stores whatever such components it is given, by name; a new stateful part of a
run joins by one entry in that dict. States must load with ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists, tuples and dicts only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

__all__ = ["Stateful", "GlobalRNG", "ShuffleRNG", "HFAssets", "capture_rng", "restore_rng"]


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def capture_rng() -> dict:
    """Python, NumPy and torch (CPU and CUDA) global RNG states; generation samples from torch's."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GlobalRNG:
    """The process-wide generators (Python, NumPy, torch, CUDA). Each rank's differ (its own samples), so
    a resume with another process count cannot map them: it seeds them instead (``reseed``)."""

    per_rank = True

    def reseed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def state_dict(self) -> dict:
        return capture_rng()

    def load_state_dict(self, state: dict) -> None:
        restore_rng(state)


@dataclass
class ShuffleRNG:
    """A private ``random.Random`` (the mini-batch shuffles)."""

    rng: random.Random

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"version": version, "internal": list(internal), "gauss": gauss}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate((state["version"], tuple(state["internal"]), state["gauss"]))


@dataclass
class HFAssets:
    """What an export needs besides the weights: model config, generation config, tokenizer."""

    model_config: object
    tokenizer: object
    generation_config: object | None = None

    def save(self, directory: Path) -> None:
        self.model_config.save_pretrained(directory)
        if self.generation_config is not None:
            self.generation_config.save_pretrained(directory)
        self.tokenizer.save_pretrained(str(directory))
