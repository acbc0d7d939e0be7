"""`fastdapo eval`: avg@n / pass@k / maj@n of a local model on a prompt file."""

from __future__ import annotations

import json
from pathlib import Path

import click

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def load_model_for_eval(path: str | Path, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) for ``--model PATH``: a local Hugging Face model directory, or a fastdapo
    run directory (its latest complete checkpoint) or checkpoint directory, exported on the fly.

    This is the one place that turns ``--model`` into weights.
    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from fastdapo.export import export_to_temp, is_run_or_checkpoint
    from fastdapo.models import TokenizerError, load_tokenizer

    p = Path(path)
    if not (p / "config.json").is_file() and is_run_or_checkpoint(p):
        try:
            tmp = export_to_temp(p)
        except (FileNotFoundError, ValueError) as e:
            raise click.ClickException(f"--model {path}: {e}") from None
        try:
            return load_model_for_eval(tmp, device=device, dtype=dtype)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not (p / "config.json").is_file():
        raise click.ClickException(
            f"--model {path}: not a Hugging Face model directory (no config.json), "
            "nor a fastdapo run or checkpoint directory"
        )
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = load_tokenizer(p)
    except TokenizerError as e:
        raise click.ClickException(f"--model {path}: {e}") from None
    model = AutoModelForCausalLM.from_pretrained(p, dtype=torch_dtype).to(dev).eval()
    return model, tokenizer


def _check_device(value: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
    if value.startswith("cuda"):
        import torch

        index = int(value.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise click.BadParameter(f"{value}: no such CUDA device here")
    return value


def _parse_pass_k(value: str | None) -> tuple[int, ...] | None:
    """``--pass-k 1,8,32`` -> (1, 8, 32), sorted and deduplicated; None keeps the default (1 and n)."""
    if value is None:
        return None
    try:
        ks = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 1,8,32") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter(f"{value!r}: each k must be >= 1")
    return tuple(ks)


def check_pass_k(pass_k: tuple[int, ...] | None, n: int) -> None:
    """Every k needs k <= n samples per problem; fails in one line, before any model or data loading."""
    too_big = [k for k in pass_k or () if k > n]
    if too_big:
        raise click.ClickException(
            f"--pass-k {too_big[0]} exceeds --n {n}: pass@k needs at least k samples per problem (k <= n)"
        )


def build_eval_engine(model, tokenizer, batch_size: int):
    from fastdapo.rollout.registry import build_engine

    return build_engine("torch", model=model, tokenizer=tokenizer, batch_size=batch_size)


@click.command("eval")
@click.option(
    "--model",
    "model_path",
    required=True,
    metavar="PATH",
    help="Local Hugging Face model directory, or a fastdapo run / checkpoint directory.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Prompt file: .parquet / .jsonl in the verl/DAPO schema, or {problem, answer} jsonl.",
)
@click.option("--n", default=32, show_default=True, type=click.IntRange(min=1), help="Samples per problem.")
@click.option(
    "--pass-k",
    default=None,
    metavar="K[,K...]",
    callback=lambda ctx, p, v: _parse_pass_k(v),
    help="Report pass@k for these k, each in [1, n], e.g. 1,8,32; unbiased estimate from each problem's n "
    "samples, 1 - C(n-c,k)/C(n,k) (Chen et al. 2021). Default: 1 and n.",
)
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 10, min_open=True),
    help="Sampling temperature, in (0, 10] as rollout.eval_temperature.",
)
@click.option(
    "--top-p",
    default=0.7,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Nucleus sampling, in (0, 1] as rollout.eval_top_p.",
)
@click.option(
    "--max-new-tokens",
    default=4096,
    show_default=True,
    type=click.IntRange(min=1),
    help="Response length cap (the DAPO paper used 20480).",
)
@click.option(
    "--max-prompt-length",
    default=2048,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longer prompts are dropped (and counted).",
)
@click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sequences generated per engine batch.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Per-problem results (JSONL). Default: eval-<data name>.jsonl in the current directory, or "
    "eval-<data name>-N.jsonl when that exists. An existing --out needs --overwrite.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing results file.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N problems.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=lambda ctx, p, v: _check_device(v),
    help="auto | cpu | cuda | cuda:N",
)
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(_DTYPES))
@click.option(
    "--no-chat-template", is_flag=True, help="Feed the raw prompt text even if the tokenizer has a chat template."
)
@click.option(
    "--reward",
    default="dapo",
    show_default=True,
    type=click.Choice(["dapo", "math_verify"]),
    help="Reward by name: dapo (the DAPO reference, as in training) or math_verify (lenient equivalence).",
)
@click.option(
    "--reward-boxed-fallback",
    is_flag=True,
    help="dapo reward: judge a response without an Answer: line by its last \\boxed{} (verl >= 0.9.1), as "
    "algorithm.reward_boxed_fallback does in training.",
)
@click.option(
    "--reward-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Answer-equivalence worker processes (default: CPU count, at most 8).",
)
@click.option(
    "--reward-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds per answer check.",
)
@click.option("--save-responses", is_flag=True, help="Also store every response text in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def eval_command(
    model_path: str,
    data: str,
    n: int,
    pass_k: tuple[int, ...] | None,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    max_prompt_length: int,
    batch_size: int,
    out: str | None,
    overwrite: bool,
    limit: int | None,
    seed: int,
    device: str,
    dtype: str,
    no_chat_template: bool,
    reward: str,
    reward_boxed_fallback: bool,
    reward_workers: int | None,
    reward_timeout: float,
    save_responses: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Evaluate a model: n samples per problem, scored by the --reward function; reports
    avg@n (DAPO's AIME metric is avg@32 at temperature 1.0, top-p 0.7), pass@k for each --pass-k
    (unbiased estimate, default k = 1 and n) and maj@n."""
    import torch
    from rich.console import Console

    from fastdapo.data import DatasetError, load_prompts
    from fastdapo.evaluation.report import print_summary
    from fastdapo.evaluation.results_file import results_path
    from fastdapo.evaluation.runner import evaluate
    from fastdapo.rollout.base import SamplingParams

    check_pass_k(pass_k, n)  # before any work: a k > n would only fail after generation
    if reward_boxed_fallback and reward != "dapo":
        raise click.UsageError(f"--reward-boxed-fallback applies to --reward dapo only, not {reward}")
    console = Console(stderr=True)
    out_path, note = results_path(out, data, overwrite)  # before any work: an existing file is never replaced
    if note:
        console.print(note)
    out = str(out_path)
    torch.manual_seed(seed)
    model, tokenizer = load_model_for_eval(model_path, device=device, dtype=dtype)
    try:
        records, stats = load_prompts(
            data, tokenizer, max_prompt_length, apply_chat_template=not no_chat_template, limit=limit
        )
    except (DatasetError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(stats.summary())
    if not records:
        raise click.ClickException(f"no prompts to evaluate in {data} (all longer than {max_prompt_length} tokens?)")
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    engine = build_eval_engine(model, tokenizer, batch_size)
    summary = evaluate(
        engine,
        records,
        params,
        out_path=out,
        chunk_size=max(1, batch_size // n),
        num_workers=reward_workers,
        timeout_s=reward_timeout,
        save_responses=save_responses,
        progress=not no_progress,
        console=console,
        description=Path(data).stem,
        reward=reward,
        pass_k=pass_k,
        reward_boxed_fallback=reward_boxed_fallback,
    )
    summary.update({"model": str(model_path), "data": str(data), "seed": seed, "reward": reward})
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary, title=f"{Path(data).stem}  ({model_path})")
        console.print(f"per-problem results: {out}")
