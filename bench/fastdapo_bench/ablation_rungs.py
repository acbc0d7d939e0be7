"""The rungs of `fastdapo bench ablation`: the DAPO paper's Table 1, one technique added per row.

The paper (arXiv 2503.14476, Table 1, AIME 2024 avg@32 of Qwen2.5-32B) lists its rows cumulatively:
Naive GRPO 30, + Overlong Filtering 36, + Clip-Higher 38, + Soft Overlong Punishment 41, + Token-level Loss 42,
+ Dynamic Sampling (DAPO) 50. Every rung here keeps what the rungs above it added, exactly as the "+" rows read;
in particular overlong filtering stays on when soft overlong punishment joins (truncated responses keep their
masked loss; the punishment then acts on the responses that end inside the buffer, L_max - L_cache < |o| <= L_max).

What each rung sets (every rung sets all six keys, so a rung never inherits one of them from the base config):

| rung                     | loss_agg_mode       | eps_low | eps_high | overlong_  | overlong_ | dynamic_ |
|                          |                     |         |          | filtering  | shaping   | sampling |
|--------------------------|---------------------|---------|----------|------------|-----------|----------|
| naive-grpo               | seq-mean-token-mean | 0.2     | 0.2      | false      | false     | false    |
| overlong-filtering       | seq-mean-token-mean | 0.2     | 0.2      | true       | false     | false    |
| clip-higher              | seq-mean-token-mean | 0.2     | 0.28     | true       | false     | false    |
| soft-overlong-punishment | seq-mean-token-mean | 0.2     | 0.28     | true       | true      | false    |
| token-level-loss         | token-mean          | 0.2     | 0.28     | true       | true      | false    |
| dynamic-sampling (DAPO)  | token-mean          | 0.2     | 0.28     | true       | true      | true     |

(all keys under ``algorithm.``). Everything else is the base config's and the same on every rung: overlong
buffer and penalty, batch sizes, learning rate, and the dual clip (``algorithm.dual_clip``, c for negative
advantages), which the rungs do not set. verl keeps c = 3.0 in every actor, the DAPO recipe's naive GRPO included,
and the paper does not ablate it; at the paper's learning rate (1e-6) a ratio past 3 should be rare, so there
it is expected to be nearly inert. At 5e-4 it is not: the later mini-batches of a step move the policy far from
the sampling one, and c = 3.0 cost the arithmetic toy run 13 points (README, "What the toy run shows"); the toy
configs, at 2e-4, turn it off. Taking the base config's value keeps the ladder in the
paper's regime (the dual clip out of the way) and its DAPO rung the toy run plus overlong filtering;
``--set algorithm.dual_clip=3.0`` gives verl's setting on every rung. The report states the value the runs used.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

__all__ = ["LADDER_KEYS", "RUNGS", "Rung", "rung_names", "select_rungs"]

NAIVE_GRPO: dict[str, object] = {
    "algorithm.loss_agg_mode": "seq-mean-token-mean",  # sample-level loss: each response's token mean, averaged
    "algorithm.eps_low": 0.2,
    "algorithm.eps_high": 0.2,  # symmetric clip
    "algorithm.overlong_filtering": False,
    "algorithm.overlong_shaping": False,
    "algorithm.dynamic_sampling": False,
}
LADDER_KEYS = tuple(NAIVE_GRPO)  # the keys the rungs own; a --set of one would flatten the ladder


@dataclass(frozen=True)
class Rung:
    name: str  # for --rungs and file names
    title: str  # the paper's row label
    adds: dict[str, object]  # what this rung changes over the one above it
    settings: dict[str, object] = field(default_factory=dict)  # the full, cumulative ladder settings

    def overrides(self) -> list[str]:
        """``--set`` strings of this rung's six ladder keys."""
        return [f"{k}={_text(v)}" for k, v in self.settings.items()]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _ladder() -> tuple[Rung, ...]:
    steps = [
        ("naive-grpo", "Naive GRPO", {}),
        ("overlong-filtering", "+ Overlong Filtering", {"algorithm.overlong_filtering": True}),
        ("clip-higher", "+ Clip-Higher", {"algorithm.eps_high": 0.28}),
        ("soft-overlong-punishment", "+ Soft Overlong Punishment", {"algorithm.overlong_shaping": True}),
        ("token-level-loss", "+ Token-level Loss", {"algorithm.loss_agg_mode": "token-mean"}),
        ("dynamic-sampling", "+ Dynamic Sampling (DAPO)", {"algorithm.dynamic_sampling": True}),
    ]
    rungs, current = [], dict(NAIVE_GRPO)
    for name, title, adds in steps:
        current = {**current, **adds}  # cumulative: each row keeps every earlier addition
        rungs.append(Rung(name, title, adds, dict(current)))
    return tuple(rungs)


RUNGS: tuple[Rung, ...] = _ladder()


def rung_names() -> list[str]:
    return [r.name for r in RUNGS]


def select_rungs(spec: str | None) -> list[Rung]:
    """Rungs named in a comma-separated ``spec`` (None or empty: all), always in ladder order.

    Raises ValueError with one line naming an unknown rung (and the nearest name)."""
    if not spec:
        return list(RUNGS)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    by_name = {r.name: r for r in RUNGS}
    for name in wanted:
        if name not in by_name:
            near = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ValueError(f"unknown rung '{name}'{hint}; rungs: {', '.join(by_name)}")
    return [r for r in RUNGS if r.name in wanted]
