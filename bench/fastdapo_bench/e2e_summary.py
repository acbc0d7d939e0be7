"""The e2e bench's summary of one framework's run: medians over the timed steps, and the overlap of generation
with the actor's work (fastdapo)."""

from __future__ import annotations

import statistics
from pathlib import Path

__all__ = ["overlap", "summarize"]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(result: dict, spec: dict) -> dict:
    """Medians over the timed steps: every step after the first of each run (round), unless only one ran."""
    runs = result.get("runs") or [result["steps"]]
    timed = [s for run in runs for s in (run[1:] if len(run) > 1 else run)]
    step_s = _median(s["time/step"] for s in timed)
    rollout_s = _median(s.get("time/rollout") for s in timed)
    total_t = sum(s["time/step"] for s in timed)
    row = {
        "framework": result["framework"],
        "rounds": len(runs),
        "steps_run": len(runs[0]),
        "steps_timed": len(timed),
        "median_step_s": round(step_s, 4) if step_s is not None else None,
        "min_step_s": round(min(s["time/step"] for s in timed), 4) if timed else None,
        "median_rollout_s": round(rollout_s, 4) if rollout_s is not None else None,
        "median_update_s": round(step_s - rollout_s, 4) if step_s is not None and rollout_s is not None else None,
        "mean_response_len": round(
            statistics.mean(s["response_length/mean"] for s in timed if s.get("response_length/mean") is not None), 2
        )
        if timed
        else None,
        "tokens_per_step": round(statistics.mean(s["tokens"] for s in timed), 1) if timed else None,
        "tokens_per_s": round(sum(s["tokens"] for s in timed) / total_t, 1) if total_t else None,
        "threads": result["threads"],
        "model": Path(spec["model_dir"]).name,
        "prompts": spec["prompts"],
        "group_size": spec["group_size"],
        "max_new_tokens": spec["max_new_tokens"],
    }
    for key in ("time/old_logprobs", "time/train"):
        if timed and key in timed[0]:
            v = _median(s.get(key) for s in timed)
            row["median_" + key.split("/")[1] + "_s"] = round(v, 4) if v is not None else None
    if timed and "gen_s" in timed[0]:  # fastdapo: generation against the actor's own work, and their overlap
        row.update(overlap(timed))
    if "max_staleness" in result:  # a fastdapo variant
        row["max_staleness"] = result["max_staleness"]
    if result.get("max_staleness"):
        row["trainer_threads"] = result.get("trainer_threads")
        row["generator_threads"] = result.get("generator_threads")
        keys = (
            "gen_s",
            "async/actor_wait_s",
            "async/generator_wait_s",
            "async/weight_transfer_s",
            "async/staleness_mean",
        )
        for key in keys:
            row["median_" + key.split("/")[-1]] = _round(_median(s.get(key) for s in timed))
        row["dropped_stale"] = sum(s.get("async/dropped_stale") or 0 for s in timed)
    return row


def _round(v, digits: int = 4):
    return None if v is None else round(v, digits)


def overlap(steps: list[dict]) -> dict:
    """Means over the steps of the step, its generation and the actor's work, and their overlap.

    overlap_eff = (gen + actor - step) / min(gen, actor): 0 when one follows the other, 1 when the shorter is
    hidden behind the longer; step_over_bound = step / max(gen, actor): 1 = the step takes no longer than
    the longer of the two. Taken over the means, not per step: an asynchronous request is generated while
    the previous step trains, so one step's figures need not add up, while the sums over steps do.
    """
    steps = [s for s in steps if s.get("gen_s") is not None and s.get("actor_s") is not None]
    if not steps:
        return {}
    step, gen, actor = (statistics.mean(s[k] for s in steps) for k in ("time/step", "gen_s", "actor_s"))
    return {
        "mean_step_s": round(step, 4),
        "mean_gen_s": round(gen, 4),
        "mean_actor_s": round(actor, 4),
        "overlap_eff": round((gen + actor - step) / min(gen, actor), 3) if min(gen, actor) > 0 else None,
        "step_over_bound": round(step / max(gen, actor), 3) if max(gen, actor) > 0 else None,
    }
