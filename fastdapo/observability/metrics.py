"""Step metrics: timers, aggregation of groups into the stable metric names, JSONL sink."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

from fastdapo.algorithm.dynamic_sampling import SamplingOutcome
from fastdapo.runtime import distributed as D


class Timer:
    def __init__(self):
        self.totals: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0


def rollout_metrics(outcome: SamplingOutcome) -> dict:
    """Reward/accuracy/length over every generated sample of the step, reduced over ranks.

    filter/kept_groups_frac is the fraction of generated groups that pass the informative filter;
    filter/exhausted is 1 when max_num_gen_batches ended the step with fewer groups than train_batch_size.
    """
    gens = [(g, s, a) for grp in outcome.generated for g, s, a in zip(grp.generations, grp.scores, grp.accs)]
    lens = [len(g.response_ids) for g, _, _ in gens]
    sums = D.all_reduce(
        [
            len(gens),
            sum(s for _, s, _ in gens),
            sum(a for _, _, a in gens),
            sum(lens),
            sum(g.truncated for g, _, _ in gens),
            sum(grp.informative for grp in outcome.generated),
            len(outcome.generated),
        ]
    )
    n, rsum, asum, lsum, tsum, informative, generated = sums
    n = max(n, 1)
    mx = D.all_reduce([max(lens, default=0)], "max")[0]
    return {
        "reward/mean": rsum / n,
        "acc/mean": asum / n,
        "response_length/mean": lsum / n,
        "response_length/max": mx,
        "response_length/clip_frac": tsum / n,
        "filter/kept_groups_frac": informative / max(generated, 1),
        "filter/kept_groups": len(outcome.kept_uids),
        "filter/gen_batches": outcome.gen_batches,
        "filter/exhausted": float(outcome.exhausted),  # 1: max_num_gen_batches stopped it short of the batch
    }


def timing_metrics(timer: Timer, step_time: float, tokens: float) -> dict:
    t = timer.totals
    return {
        "time/rollout": t.get("rollout", 0.0),
        "time/reward": t.get("reward", 0.0),
        "time/old_logprobs": t.get("old_logprobs", 0.0),
        "time/train": t.get("train", 0.0),
        "time/step": step_time,
        "throughput/tokens_per_s": tokens / step_time,
    }


def token_mean(values: list, masks: list) -> float:
    num = sum(float((v * m).sum()) for v, m in zip(values, masks))
    den = sum(float(m.sum()) for m in masks)
    num, den = D.all_reduce([num, den])
    return num / den if den else 0.0


class MetricsWriter:
    """Appends one JSON object per step to RUN_DIR/metrics.jsonl (rank 0 only)."""

    def __init__(self, run_dir: Path, truncate_after_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        if D.is_main() and truncate_after_step is not None and self.path.exists():
            # On resume, drop lines past the checkpoint so the steps that are re-run are not duplicated.
            keep = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= truncate_after_step
            ]
            self.path.write_text("".join(k + "\n" for k in keep))

    def write(self, metrics: dict) -> None:
        if not D.is_main():
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
