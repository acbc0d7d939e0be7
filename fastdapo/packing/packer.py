"""The packer of a run: chosen once from the config and the model, it owns the token budget.

Packing is two steps so that data-parallel ranks can agree on a micro-batch count in between:
``plan`` says how many micro-batches these sequences need on their own; ``pack`` builds exactly
``num_micro_batches`` (>= the plan's count; the plan is reused when the counts agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.layouts import ATTN_IMPLS, MicroBatch
from fastdapo.packing.packed import make_micro_batches, plan_micro_batches
from fastdapo.packing.shared_prompt import SHARED_ATTN_IMPLS, Bundle, make_bundles, make_shared_micro_batches

__all__ = ["PackPlan", "PackStats", "Packer", "PlainPacker", "SharedPromptPacker", "build_packer"]


@dataclass
class PackPlan:
    parts: list[list[int]]  # unit indices per micro-batch (units: sequences, or prompt bundles)
    bundles: list[Bundle] | None = None

    @property
    def count(self) -> int:
        return len(self.parts)


@dataclass
class PackStats:
    """Token accounting summed over every micro-batch of a step."""

    slots: int = 0  # token positions computed, padding included
    real: int = 0  # tokens computed, padding excluded (a shared prompt counts once)
    plain: int = 0  # tokens the sequences hold one by one

    def add(self, seqs: list[Sequence], mbs: list[MicroBatch]) -> None:
        self.slots += sum(mb.input_ids.numel() for mb in mbs)
        self.real += sum(mb.num_tokens for mb in mbs)
        self.plain += sum(len(s) for s in seqs)

    def metrics(self, slots: float, real: float, plain: float) -> dict[str, float]:
        """From (possibly all-reduced) totals: padding share, and the share shared prompts saved."""
        return {
            "packing/padding_frac": 1.0 - real / slots if slots else 0.0,
            "packing/shared_prompt_saving": 1.0 - real / plain if plain else 0.0,
        }


class Packer(Protocol):
    max_tokens: int
    attn_impl: str

    def plan(self, seqs: list[Sequence]) -> PackPlan: ...

    def pack(self, seqs: list[Sequence], plan: PackPlan, num_micro_batches: int) -> list[MicroBatch]: ...


@dataclass
class PlainPacker:
    """Sequences back to back in a row, each attending only to itself."""

    max_tokens: int
    attn_impl: str = "sdpa"
    pad_token_id: int = 0
    pad_to_multiple_of: int = 1  # rows split evenly over a sequence-parallel group

    def plan(self, seqs: list[Sequence], num_micro_batches: int | None = None) -> PackPlan:
        return PackPlan(plan_micro_batches([len(s) for s in seqs], self.max_tokens, num_micro_batches))

    def pack(self, seqs: list[Sequence], plan: PackPlan, num_micro_batches: int) -> list[MicroBatch]:
        if num_micro_batches != plan.count:
            plan = self.plan(seqs, num_micro_batches)
        return make_micro_batches(
            seqs,
            self.max_tokens,
            attn_impl=self.attn_impl,
            pad_token_id=self.pad_token_id,
            plan=plan.parts,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )


@dataclass
class SharedPromptPacker:
    """Each group's prompt once per micro-batch row, followed by its responses."""

    max_tokens: int
    attn_impl: str = "sdpa"
    pad_token_id: int = 0
    pad_to_multiple_of: int = 1  # rows split evenly over a sequence-parallel group

    def plan(
        self, seqs: list[Sequence], num_micro_batches: int | None = None, bundles: list[Bundle] | None = None
    ) -> PackPlan:
        bundles = make_bundles(seqs, self.max_tokens) if bundles is None else bundles
        return PackPlan(plan_micro_batches([len(b) for b in bundles], self.max_tokens, num_micro_batches), bundles)

    def pack(self, seqs: list[Sequence], plan: PackPlan, num_micro_batches: int) -> list[MicroBatch]:
        if num_micro_batches != plan.count:
            plan = self.plan(seqs, num_micro_batches, plan.bundles)
        return make_shared_micro_batches(
            seqs,
            self.max_tokens,
            attn_impl=self.attn_impl,
            pad_token_id=self.pad_token_id,
            bundles=plan.bundles,
            plan=plan.parts,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )


def build_packer(max_tokens: int, attn_impl: str, share_prompts: bool, pad_to_multiple_of: int = 1) -> Packer:
    """``attn_impl``: the model's attention implementation (an unknown one is treated as ``sdpa``,
    whose 4-D mask every attention honours). Shared prompts need an attention that can express a
    shared prefix; flash-attention's varlen kernel cannot, so those models pack sequences plainly."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    attn = attn_impl if attn_impl in ATTN_IMPLS else "sdpa"
    if share_prompts and attn in SHARED_ATTN_IMPLS:
        return SharedPromptPacker(max_tokens, attn, pad_to_multiple_of=pad_to_multiple_of)
    return PlainPacker(max_tokens, attn, pad_to_multiple_of=pad_to_multiple_of)
