"""Fidelity probe: the trainer's per-token log-probs (its own packing, attention and fused LM head)
against the model's own transformers forward, on a few prompt/response groups.

This catches what ``fastdapo.actor.output_head`` cannot see: a transform in the model's forward that
its config does not declare. Used by ``fastdapo check-model`` (a table) and before the first rollout
of ``fastdapo train`` (a one-line refusal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdapo.actor.actor import Actor
from fastdapo.actor.output_head import UnsupportedModelError
from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.packer import Packer

__all__ = [
    "ProbeRow",
    "FidelityError",
    "tolerance",
    "probe_sequences",
    "model_logprobs",
    "compare",
    "trainer_logprobs",
    "split_prompt_groups",
    "check_fidelity",
]

# (max, mean) |delta| accepted, in nats. fp32 is exact up to summation order. bf16 / fp16 logits are
# rounded in the model's own forward (not in the fused kernel, which keeps fp32 logits): tiny models
# show a max of ~0.04 and a mean of ~0.01 in bf16; a missed output transform moves the mean by far more.
TOLERANCE = {
    torch.float32: (2e-4, 2e-4),
    torch.float64: (2e-4, 2e-4),
    torch.bfloat16: (0.25, 0.03),
    torch.float16: (0.1, 0.01),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


class FidelityError(UnsupportedModelError):
    """The trainer's log-probs disagree with the model's own forward."""


@dataclass
class ProbeRow:
    name: str
    max_delta: float
    mean_delta: float
    tokens: int
    tolerance: tuple[float, float]  # (max, mean)

    @property
    def ok(self) -> bool:
        return self.max_delta <= self.tolerance[0] and self.mean_delta <= self.tolerance[1]  # NaN fails


def probe_sequences(groups: list[tuple[list[int], list[list[int]]]]) -> list[Sequence]:
    """(prompt ids, response ids per sample) per group -> Sequences scoring every response token."""
    seqs = []
    for gid, (prompt, responses) in enumerate(groups):
        p = len(prompt)
        for resp in responses:
            ids = torch.tensor(list(prompt) + list(resp), dtype=torch.long)
            mask = torch.zeros(len(ids), dtype=torch.bool)
            mask[p - 1 : p + len(resp) - 1] = True
            seqs.append(
                Sequence(input_ids=ids, loss_mask=mask, prompt_len=p, group=gid, advantages=torch.zeros(len(ids)))
            )
    return seqs


def split_prompt_groups(prompts: list[list[int]], count: int = 2) -> list[tuple[list[int], list[list[int]]]]:
    """Deterministic groups from prompt token lists alone (no sampling, no RNG): each prompt's first
    half is a group prompt, the second halves of the prompts are its responses."""
    usable = [p for p in prompts if len(p) >= 4][:count]
    halves = [(p[: len(p) // 2], p[len(p) // 2 :]) for p in usable]
    return [(head, [tail for _, tail in halves]) for head, _ in halves]


@torch.no_grad()
def model_logprobs(model: torch.nn.Module, seqs: list[Sequence], temperature: float) -> list[torch.Tensor]:
    """Per sequence, at each predicting position t, log p(token t+1) under log_softmax(logits / T) of the
    model's own forward (one sequence at a time, no packing); the last position is 0."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for s in seqs:
            logits = model(input_ids=s.input_ids[None].to(device), use_cache=False).logits[0, :-1].float()
            lp = torch.log_softmax(logits / temperature, -1).gather(1, s.input_ids[1:, None].to(device))[:, 0]
            out.append(torch.cat([lp.cpu(), lp.new_zeros(1).cpu()]))
    finally:
        model.train(was_training)
    return out


def trainer_logprobs(engine, packer: Packer, seqs: list[Sequence], ulysses=None) -> list[torch.Tensor]:
    """The trainer's old-log-prob pass: ``engine`` is the policy (a PolicyWithLoss or its DeepSpeed engine);
    ``ulysses``: the sequence-parallel attention, when rows are split over ranks (collective then)."""
    device = next(engine.parameters()).device
    return Actor(engine, packer, device, ulysses=ulysses).score(seqs)[0]


def compare(
    name: str, got: list[torch.Tensor], ref: list[torch.Tensor], seqs: list[Sequence], tol: tuple[float, float]
) -> ProbeRow:
    deltas = torch.cat([(g.float().cpu() - r.float().cpu())[s.loss_mask].abs() for g, r, s in zip(got, ref, seqs)])
    if deltas.numel() == 0:
        raise ValueError("the probe has no response tokens to compare")
    return ProbeRow(name, float(deltas.max()), float(deltas.mean()), int(deltas.numel()), tol)


def check_fidelity(
    engine,
    model: torch.nn.Module,
    packer: Packer,
    prompts: list[list[int]],
    temperature: float,
    model_path: str,
    ulysses=None,
) -> ProbeRow | None:
    """The train-time probe: raises :class:`FidelityError` (one line) when the trainer's log-probs on a
    couple of sequences differ from the model's own forward."""
    seqs = probe_sequences(split_prompt_groups(prompts))
    if not seqs:
        return None  # no prompt of 4 or more tokens to build a group from
    with torch.random.fork_rng(devices=[]):  # the probe draws nothing, but must not move the run's RNG either way
        ref = model_logprobs(model, seqs, temperature)
        got = trainer_logprobs(engine, packer, seqs, ulysses)
    dtype = next(model.parameters()).dtype
    row = compare(f"trainer ({type(packer).__name__}) vs model", got, ref, seqs, tolerance(dtype))
    if not row.ok:
        raise FidelityError(
            f"{type(model).__name__}: the trainer's log-probs differ from the model's own forward (|delta| max "
            f"{row.max_delta:.3g} / mean {row.mean_delta:.3g} nats over {row.tokens} tokens, allowed "
            f"{row.tolerance[0]:g} / {row.tolerance[1]:g}), so training would be "
            f"silently wrong; run fastdapo check-model {model_path} for details; model.check_fidelity=false to skip"
        )
    return row
