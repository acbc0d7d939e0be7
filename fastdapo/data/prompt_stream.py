"""Endless, resumable stream of training prompts: shuffled per epoch, sharded over ranks."""

from __future__ import annotations

import dataclasses
import random

from fastdapo.data.records import PromptRecord


class PromptStream:
    def __init__(self, records: list[PromptRecord], seed: int, shuffle: bool = True, rank: int = 0, world: int = 1):
        if not records:
            raise ValueError("no training prompts")
        self.records = records
        self.seed, self.shuffle, self.rank, self.world = seed, shuffle, rank, world
        self.epoch, self.position, self.consumed = 0, 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        order = list(range(len(self.records)))
        if self.shuffle:
            random.Random(self.seed * 100003 + self.epoch).shuffle(order)
        return order

    def next(self, n: int) -> list[PromptRecord]:
        """This rank's share of the next `n` prompts (every rank advances the same global position)."""
        picked = []
        for i in range(n):
            if self.position >= len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order()
            if i % self.world == self.rank:
                rec = self.records[self._order[self.position]]
                picked.append(dataclasses.replace(rec, uid=self.consumed))
            self.position += 1
            self.consumed += 1
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.consumed = int(state.get("consumed", 0))
        self._order = self._epoch_order()
