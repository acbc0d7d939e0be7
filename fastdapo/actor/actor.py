"""Actor passes: old log-probs (forward only) and the mini-batch DAPO updates.

Token-level loss: every micro-batch's loss is divided by the number of loss tokens of the WHOLE
mini-batch (all micro-batches, all ranks), and DeepSpeed's own 1/GAS and 1/data-parallel scaling are
undone, so the summed gradient equals the gradient of one big batch.

Sequence parallelism (S > 1): the S ranks of a group hold the same sequences and each computes 1/S of every
packed row (:mod:`fastdapo.packing.sequence_shard`), so every loss token is counted on exactly one rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from fastdapo.actor.ds_engine import gradient_average_degree
from fastdapo.actor.mismatch import MismatchStats
from fastdapo.actor.nonfinite import NonFiniteCounter
from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.layouts import MicroBatch
from fastdapo.packing.packed import scatter_back
from fastdapo.packing.packer import Packer, PackStats
from fastdapo.packing.sequence_shard import SequenceShard, shard_micro_batch
from fastdapo.runtime import distributed as D
from fastdapo.runtime import sequence_parallel as SP


@dataclass
class UpdateStats:
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    clip_low: float = 0.0  # token-weighted sums, divided at the end
    clip_high: float = 0.0
    clip_dual: float = 0.0
    entropy: float = 0.0
    prob: float = 0.0
    tokens: float = 0.0
    skipped: int = 0
    without_signal: int = 0  # mini-batches whose every loss token has advantage 0: not stepped
    lr: float = 0.0
    packing: PackStats = field(default_factory=PackStats)  # every micro-batch of every mini-batch
    mismatch: MismatchStats = field(default_factory=MismatchStats)  # rollout engine vs trainer log-probs

    def summary(self) -> dict:
        """Means over every loss token of every rank (entropy/prob as seen by the update passes)."""
        p = self.packing
        sums = (self.clip_low, self.clip_high, self.clip_dual, self.entropy, self.prob, self.tokens)
        low, high, dual, ent, prob, tokens, slots, real, plain = D.all_reduce(
            [float(x) for x in (*sums, p.slots, p.real, p.plain)]
        )
        t = max(tokens, 1.0)
        finite = [g for g in self.grad_norms if math.isfinite(g)]
        return {
            "loss": sum(self.losses) / max(1, len(self.losses)) if self.losses else 0.0,
            "grad_norm": sum(finite) / len(finite) if finite else 0.0,
            "clip_frac/low": low / t,
            "clip_frac/high": high / t,
            "clip_frac/dual": dual / t,
            "entropy/mean": ent / t,
            "logprob/mean_prob": prob / t,
            "lr": self.lr,
            "train/skipped_updates": self.skipped,
            "train/updates": len(self.losses),
            "train/no_signal_minibatches": self.without_signal,
            **p.metrics(slots, real, plain),
            **self.mismatch.summary(),
        }


class Actor:
    def __init__(self, engine, packer: Packer, device: torch.device, max_nonfinite_skips: int = 3, ulysses=None):
        self.engine = engine
        self.packer = packer
        self.device = device
        self.nonfinite = NonFiniteCounter(max_nonfinite_skips)
        self.ulysses = ulysses  # the sequence-parallel attention (actor.ulysses) when S > 1, else None
        self.grad_divisor = gradient_average_degree(engine)

    @property
    def policy(self):
        return self.engine.module

    def micro_batches(self, seqs: list[Sequence], stats: PackStats | None = None) -> list[MicroBatch]:
        plan = self.packer.plan(seqs)
        # Every rank runs the same number of micro-batches, or collectives would hang.
        count = int(D.all_reduce([plan.count], "max")[0])
        mbs = self.packer.pack(seqs, plan, count)
        if self.ulysses is not None:
            mbs = [shard_micro_batch(mb, SP.rank(), SP.size(), self.ulysses) for mb in mbs]
        if stats is not None:
            stats.add(seqs if SP.rank() == 0 else [], mbs)  # the group's shards add up to each row once
        return mbs

    @torch.no_grad()
    def score(self, seqs: list[Sequence]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-sequence (log-probs, entropy) at the rollout temperature, aligned to predicting positions."""
        self.engine.eval()
        mbs = self.micro_batches(seqs)
        lps, ents = [], []
        for mb in mbs:
            lp, ent = self.engine(mb.to(self.device), score_only=True)
            if isinstance(mb, SequenceShard):  # whole rows, from the group's shards
                lp, ent = mb.whole(lp, SP.sum_over_group), mb.whole(ent, SP.sum_over_group)
            lps.append(lp.float().cpu())
            ents.append(ent.float().cpu())
        self.engine.train()
        rows = [mb.full if isinstance(mb, SequenceShard) else mb for mb in mbs]
        return scatter_back(rows, lps, len(seqs)), scatter_back(rows, ents, len(seqs))

    def update(self, seqs: list[Sequence], seq_uids: list[int], plans: list[list[set[int]]]) -> UpdateStats:
        """`plans`: per epoch, the mini-batches as sets of prompt uids (identical on every rank)."""
        settings = getattr(self.policy, "settings", None)
        stats = UpdateStats(
            mismatch=MismatchStats(settings.rollout_correction, settings.rollout_correction_cap)
            if settings is not None
            else MismatchStats()
        )
        for plan in plans:
            for mini in plan:
                self._update_one([s for s, u in zip(seqs, seq_uids) if u in mini], stats)
        return stats

    @staticmethod
    def has_gradient_signal(mini: list[Sequence]) -> bool:
        """Collective: does any rank's mini-batch have a loss token with a non-zero advantage? Without one the
        DAPO loss and its gradient are exactly 0 (each token's term is its advantage times a bounded factor)."""
        local = any(bool((s.advantages[s.loss_mask] != 0).any()) for s in mini if s.advantages is not None)
        return D.all_reduce([1.0 if local else 0.0], "max")[0] > 0

    def _update_one(self, mini: list[Sequence], stats: UpdateStats) -> None:
        if not self.has_gradient_signal(mini):
            # An optimizer step on a zero gradient still moves the weights (AdamW's decay, earlier steps'
            # moments) and advances the schedule: skip it, as when dynamic sampling keeps nothing. The
            # forward pass still runs, for the step's entropy and rollout-correction metrics.
            self.accumulate_gradients(mini, stats, backward=False)
            stats.without_signal += 1
            stats.lr = self.engine.get_lr()[0]
            return
        loss_total = self.accumulate_gradients(mini, stats)
        self.engine.step()  # the accumulation boundary: reduce, clip, optimizer and scheduler step
        grad_norm = self.engine.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else 0.0
        stats.losses.append(loss_total)
        stats.grad_norms.append(grad_norm)
        stats.lr = self.engine.get_lr()[0]
        self._track_nonfinite(loss_total, grad_norm, stats)

    def accumulate_gradients(
        self, mini: list[Sequence], stats: UpdateStats | None = None, backward: bool = True
    ) -> float:
        """Forward/backward of every micro-batch of one mini-batch; returns the global mini-batch loss.
        backward=False: the forward passes only (metrics), leaving gradients and DeepSpeed's counters alone."""
        div = self.grad_divisor
        norm_t = self._normalize(mini, div)
        mbs = self.micro_batches(mini, stats.packing if stats is not None else None)
        loss_total = 0.0
        for k, mb in enumerate(mbs):
            last = k == len(mbs) - 1
            if not backward:
                with torch.no_grad():
                    loss, st = self.engine(mb.to(self.device), normalizer=norm_t)
            else:
                self.engine.set_gradient_accumulation_boundary(last)
                loss, st = self.engine(mb.to(self.device), normalizer=norm_t)
                self.engine.backward(loss, scale_wrt_gas=False)
                if not last:
                    self.engine.step()  # not a boundary: DeepSpeed only counts the micro-step
            loss_total = loss_total + loss.detach().float() / div
            if stats is not None:
                # summed on the device; converted once per step in summary() (no sync per micro-batch)
                m = mb.loss_mask
                n_tok = m.sum()
                stats.clip_low = stats.clip_low + st["clip_frac_low"] * n_tok
                stats.clip_high = stats.clip_high + st["clip_frac_high"] * n_tok
                stats.clip_dual = stats.clip_dual + st["clip_frac_dual"] * n_tok
                stats.entropy = stats.entropy + st["entropy"].reshape(-1)[m].sum()
                stats.prob = stats.prob + st["logprobs"].reshape(-1)[m].exp().sum()
                stats.tokens = stats.tokens + n_tok
                if mb.rollout_logprobs is not None:
                    # the trainer side of rho, as the loss saw it: old-log-prob pass, or on-policy this pass
                    trainer_lp = mb.old_logprobs if mb.old_logprobs is not None else st["logprobs"]
                    stats.mismatch.add(trainer_lp, mb.rollout_logprobs, m, st.get("is_weight"))
        return D.all_reduce([float(loss_total)], "sum")[0]

    def _normalize(self, mini: list[Sequence], div: float) -> torch.Tensor:
        """The loss divisor of this mini-batch, as each rank passes it: DeepSpeed sums the ranks' gradients and
        then divides by `div`, so each rank divides by (global divisor / div). token-mean: one divisor, the loss
        tokens of the whole mini-batch. seq-mean-token-mean: per token, its sequence's loss tokens times the
        sequences with any (set on each sequence as `loss_normalizer`; returned scalar unused)."""
        counts = [int(s.loss_mask.sum()) for s in mini]
        # the S ranks of a sequence-parallel group hold the same sequences: each counts once
        tokens, seqs = (
            x / SP.size() for x in D.all_reduce([float(sum(counts)), float(sum(c > 0 for c in counts))], "sum")
        )
        per_sequence = getattr(self.policy, "settings", None) is not None and (
            self.policy.settings.loss_agg_mode == "seq-mean-token-mean"
        )
        for s, c in zip(mini, counts):
            s.loss_normalizer = torch.full((len(s),), max(c, 1) * seqs / div) if per_sequence else None
        return torch.tensor(max(tokens, 1.0) / div, device=self.device)

    def _track_nonfinite(self, loss: float, grad_norm: float, stats: UpdateStats) -> None:
        # DeepSpeed already skips the step when the global gradient norm overflows; we count and bound it.
        if self.nonfinite.observe(loss, grad_norm):
            stats.skipped += 1
