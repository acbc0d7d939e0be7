"""Evaluation loop: generate k samples per problem, score them, write per-problem JSONL, summarize."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fastdapo.data.records import PromptRecord
from fastdapo.evaluation.metrics import SampleResult, compute_metrics, default_pass_k, majority_vote
from fastdapo.rewards import DEFAULT_REWARD, DEFAULT_TIMEOUT_S, score_batch
from fastdapo.rollout.base import Generation, RolloutEngine, SamplingParams


def _problem_row(rec: PromptRecord, gens: list[Generation], results, save_responses: bool) -> dict:
    preds = [r.pred for r in results]
    accs = [bool(r.acc) for r in results]
    maj_pred, maj_acc = majority_vote(preds, accs)
    row = {
        "index": rec.index,
        "data_source": rec.data_source,
        "ground_truth": rec.ground_truth,
        "preds": preds,
        "accs": accs,
        "lengths": [len(g.response_ids) for g in gens],
        "truncated": [bool(g.truncated) for g in gens],
        "avg": sum(accs) / max(1, len(accs)),
        "pass": any(accs),  # pass@n of this problem; pass@k for k < n follows from accs
        "maj_pred": maj_pred,
        "maj": maj_acc,
    }
    if save_responses:
        row["responses"] = [g.text for g in gens]
    return row


def evaluate(
    engine: RolloutEngine,
    records: list[PromptRecord],
    params: SamplingParams,
    out_path: str | Path | None = None,
    *,
    chunk_size: int = 8,
    num_workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    save_responses: bool = False,
    progress: bool = True,
    console: Console | None = None,
    description: str = "evaluating",
    reward: str = DEFAULT_REWARD,
    pass_k: Sequence[int] | None = None,
    reward_boxed_fallback: bool = False,
) -> dict:
    """Sample ``params.n`` responses per record, score them, and return the summary metrics.

    Records are generated ``chunk_size`` at a time (the engine batches inside a call); after each
    chunk the per-problem rows are appended to ``out_path`` (JSONL: index, ground truth, preds,
    accs, lengths, ...), so partial results survive an interruption. The summary holds
    ``avg@n`` / ``pass@k`` (for each k of ``pass_k``, default 1 and n; see ``metrics``) / ``maj@n``
    overall and per ``data_source`` (``by_source``). ``reward`` names the scorer (see
    ``fastdapo.rewards.registry``), the same one training uses by default.
    """
    if params.n < 1:
        raise ValueError("SamplingParams.n must be >= 1")
    ks = sorted(set(pass_k)) if pass_k is not None else list(default_pass_k(params.n))
    bad = [k for k in ks if not 1 <= k <= params.n]
    if bad:  # before any generation: the estimator needs k <= n samples of every problem
        raise ValueError(f"pass@{bad[0]} needs 1 <= k <= n samples per problem, got n={params.n}")
    console = console or Console(stderr=True)
    out_file = None
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_file = out_path.open("w", encoding="utf-8")
    samples: list[SampleResult] = []
    sources: dict[str, list[SampleResult]] = {}
    t_gen = t_score = 0.0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("problems"),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        TextColumn("acc {task.fields[acc]:.3f}"),
    ]
    try:
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            task = bar.add_task(description, total=len(records), acc=0.0)
            for start in range(0, len(records), chunk_size):
                chunk = records[start : start + chunk_size]
                t0 = time.perf_counter()
                gens = engine.generate([r.prompt_ids for r in chunk], params)
                t_gen += time.perf_counter() - t0
                if len(gens) != len(chunk) * params.n:
                    raise RuntimeError(
                        f"engine returned {len(gens)} generations for {len(chunk)} prompts x n={params.n}"
                    )
                t0 = time.perf_counter()
                truths = [chunk[g.prompt_index].ground_truth for g in gens]
                results = score_batch(
                    [g.text for g in gens],
                    truths,
                    reward=reward,
                    num_workers=num_workers,
                    timeout_s=timeout_s,
                    reward_boxed_fallback=reward_boxed_fallback,
                )
                t_score += time.perf_counter() - t0
                for i, rec in enumerate(chunk):
                    lo, hi = i * params.n, (i + 1) * params.n
                    if any(g.prompt_index != i for g in gens[lo:hi]):
                        raise RuntimeError("engine output is not grouped contiguously per prompt")
                    pid = start + i
                    for g, r in zip(gens[lo:hi], results[lo:hi]):
                        s = SampleResult(
                            problem=pid,
                            pred=r.pred,
                            acc=bool(r.acc),
                            length=len(g.response_ids),
                            truncated=bool(g.truncated),
                        )
                        samples.append(s)
                        sources.setdefault(rec.data_source, []).append(s)
                    if out_file is not None:
                        row = _problem_row(rec, gens[lo:hi], results[lo:hi], save_responses)
                        out_file.write(json.dumps(row, ensure_ascii=False) + "\n")
                if out_file is not None:
                    out_file.flush()
                bar.update(task, advance=len(chunk), acc=sum(s.acc for s in samples) / max(1, len(samples)))
    finally:
        if out_file is not None:
            out_file.close()
    summary = compute_metrics(samples, ks)
    summary.update(
        {
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "time/generate": round(t_gen, 3),
            "time/score": round(t_score, 3),
        }
    )
    if len(sources) > 1:
        summary["by_source"] = {src: compute_metrics(ss, ks) for src, ss in sources.items()}
    if out_path is not None:
        summary["out"] = str(out_path)
    return summary
