"""From each run's RUN_DIR (metrics.jsonl + the config.yaml `fastdapo train` wrote) to the ablation's numbers.

Samples consumed: a step's generated responses, read from what the trainer logs and the run's own resolved
config. Each sampling round draws exactly ``gen_batch_size`` prompts from the prompt stream with dynamic
sampling on, ``train_batch_size`` with it off (``fastdapo.algorithm.dynamic_sampling.collect``;
``PromptStream.next(k)`` always returns k prompts over the ranks), and each prompt gets ``rollout.n`` responses;
``filter/gen_batches`` counts the rounds. So a step generated
``filter/gen_batches x (gen_batch_size if dynamic_sampling else train_batch_size) x rollout.n`` responses, and a
run's "samples consumed" is that summed over its steps. Evaluation samples (held-out problems x eval_n) are
not counted: every rung spends the same on them.

Entropy and clip fractions come from the passes over the kept groups: a step that kept none (dynamic sampling found
no informative group) logs them as 0 over 0 tokens, so they are read as missing there, and "final" means the last
step that measured them.

Held-out accuracy is ``eval/acc`` of the last step (the trainer always evaluates at the end); its interval over
seeds is Student's t: mean +- t(0.975, n-1) * s / sqrt(n), with s the sample standard deviation (n - 1); one
seed gives no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from fastdapo.observability.plot import read_metrics

__all__ = ["STEP_KEYS", "RunData", "read_run", "rung_summary", "run_summary", "step_rows", "t_interval"]

# metrics.jsonl keys carried into the per-step CSV (and the plot)
STEP_KEYS = (
    "eval/acc",
    "acc/mean",
    "reward/mean",
    "entropy/mean",
    "response_length/mean",
    "response_length/clip_frac",
    "clip_frac/low",
    "clip_frac/high",
    "clip_frac/dual",  # A < 0 tokens the dual clip caps (logged by trainers that have it)
    "filter/gen_batches",
    "filter/kept_groups_frac",
    "train/updates",
    "time/step",
)

# Two-sided 95% Student t quantiles t(0.975, df), df = 1..30 (standard tables); beyond, a Cornish-Fisher
# expansion around the normal quantile (error < 1e-3 there). No scipy in the environment.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of a 95% t-interval; low/high None for fewer than two values, all None for none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None, None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    half = t_quantile_975(len(xs) - 1) * sd / math.sqrt(len(xs))
    return mean, mean - half, mean + half


@dataclass
class RunData:
    rows: list[dict]  # metrics.jsonl, in order
    config: dict  # the run's resolved config.yaml

    def prompts_per_round(self) -> int:
        a = self.config["algorithm"]
        return int(a["gen_batch_size"] if a["dynamic_sampling"] else a["train_batch_size"])

    def samples(self, row: dict) -> int:
        """Responses generated at the step of ``row`` (0 for the step-0 evaluation row)."""
        rounds = row.get("filter/gen_batches")
        return int(rounds) * self.prompts_per_round() * int(self.config["rollout"]["n"]) if rounds else 0

    def train_rows(self) -> list[dict]:
        return [r for r in self.rows if r.get("step", 0) >= 1]


# measured on the kept groups' tokens only (see the module docstring)
UPDATE_KEYS = ("entropy/mean", "clip_frac/low", "clip_frac/high", "clip_frac/dual")


def read_run(run_dir: str | Path) -> RunData:
    """metrics.jsonl and config.yaml of a finished run (FileNotFoundError if either is missing)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    for r in rows:
        if r.get("filter/kept_groups") == 0:  # nothing trained on: 0 over 0 tokens, not a measurement
            r.update({k: None for k in UPDATE_KEYS if k in r})
    # a resumed or repeated line for a step keeps the newest (the trainer itself cuts them back on resume)
    by_step = {int(r.get("step", 0)): r for r in rows}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return RunData([by_step[s] for s in sorted(by_step)], config)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _mean(values) -> float | None:
    xs = [v for v in (_num(x) for x in values) if v is not None]
    return sum(xs) / len(xs) if xs else None


def _last(rows: list[dict], key: str) -> float | None:
    return next((v for v in (_num(r.get(key)) for r in reversed(rows)) if v is not None), None)


def run_summary(run: RunData) -> dict:
    """One run's final numbers: eval/acc at step 0 and at the last step, the last measured entropy and length, the
    clip fractions averaged over the steps that measured them, and the samples it generated."""
    train = run.train_rows()
    last = train[-1] if train else {}
    first = run.rows[0] if run.rows and run.rows[0].get("step", 0) == 0 else {}
    return {
        "steps": int(last.get("step", 0)),
        "acc_step0": _num(first.get("eval/acc")),
        "acc_final": _num(last.get("eval/acc")),
        "train_acc_final": _num(last.get("acc/mean")),
        "entropy_final": _last(train, "entropy/mean"),
        "length_final": _last(train, "response_length/mean"),
        "clip_frac_high_mean": _mean(r.get("clip_frac/high") for r in train),
        "clip_frac_low_mean": _mean(r.get("clip_frac/low") for r in train),
        "clip_frac_dual_mean": _mean(r.get("clip_frac/dual") for r in train),
        "kept_groups_frac_mean": _mean(r.get("filter/kept_groups_frac") for r in train),
        "samples": sum(run.samples(r) for r in train),
        "dual_clip": run.config["algorithm"].get("dual_clip"),  # not a rung setting: the report states it
        "train_time_s": sum(_num(r.get("time/step")) or 0.0 for r in train),
    }


def step_rows(rung: str, seed: int, run: RunData) -> list[dict]:
    """Per-step rows for the steps CSV: the STEP_KEYS, the step's samples and the running total."""
    out, total = [], 0
    for r in run.rows:
        n = run.samples(r)
        total += n
        out.append({"rung": rung, "seed": seed, "step": int(r.get("step", 0)), **{k: r.get(k) for k in STEP_KEYS},
                    "samples": n, "samples_cum": total})  # fmt: skip
    return out


def rung_summary(runs: list[dict]) -> dict:
    """Aggregate of one rung's successful run summaries: accuracy mean and t-interval, the rest seed-means."""
    mean, low, high = t_interval([r["acc_final"] for r in runs])
    gain = t_interval([r["acc_final"] - r["acc_step0"] for r in runs if None not in (r["acc_final"], r["acc_step0"])])
    keys = ("entropy_final", "length_final", "clip_frac_high_mean", "clip_frac_low_mean", "samples", "wall_s")
    return {
        "seeds_ok": len(runs),
        "acc_mean": mean,
        "acc_low": low,
        "acc_high": high,
        "acc_gain_mean": gain[0],
        **{k: _mean(r.get(k) for r in runs) for k in keys},
    }
