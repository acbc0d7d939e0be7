"""`fastdapo check-model PATH`: does the trainer compute the model's own log-probs?

Samples a few short responses from the model itself (the torch rollout engine, chat template when
the tokenizer has one), then compares per-token log-probs of every response token:

- the trainer's path (packer, attention and fused LM head that training uses; shared-prompt and plain
  packing) against the model's own transformers forward, and
- the rollout engine's sampled-token log-probs against the same forward.

Prints one table row per check and exits 1 on a mismatch or on a model the trainer refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PROMPTS = ["What is 12 + 30?", "Name a prime number larger than 10.", "Write one short sentence about the sea."]


def encode_prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    if getattr(tokenizer, "chat_template", None):
        return [
            list(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
            for t in texts
        ]
    return [tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]


def run_checks(
    model, tokenizer, temperature: float = 1.0, samples: int = 3, max_new_tokens: int = 12, seed: int = 0
) -> list:
    """The probe rows (``fastdapo.actor.probe.ProbeRow``) for a loaded model; raises
    ``UnsupportedModelError`` (one line) for a model the trainer refuses."""
    import torch

    from fastdapo.actor.model_support import check_model_support
    from fastdapo.actor.policy import LossSettings, PolicyWithLoss
    from fastdapo.actor.probe import compare, model_logprobs, probe_sequences, tolerance, trainer_logprobs
    from fastdapo.packing.packer import PlainPacker, SharedPromptPacker
    from fastdapo.rollout.base import SamplingParams
    from fastdapo.rollout.torch_engine import TorchEngine

    model.eval()
    prompts = encode_prompts(tokenizer, PROMPTS)
    params = SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens)
    gens = TorchEngine(model, tokenizer).generate(prompts, params, seeds=[seed + i for i in range(len(prompts))])
    by_prompt: dict[int, list] = {}
    for g in gens:
        by_prompt.setdefault(g.prompt_index, []).append(g)
    groups = [(prompts[i], [g.response_ids for g in gs]) for i, gs in sorted(by_prompt.items())]
    seqs = probe_sequences(groups)
    attn = model.config._attn_implementation
    check_model_support(model, attn, max(len(s) for s in seqs))
    tol = tolerance(next(model.parameters()).dtype)
    ref = model_logprobs(model, seqs, temperature)
    policy = PolicyWithLoss(model, LossSettings(temperature=temperature))
    rows = [
        compare(f"trainer ({label}) vs model", trainer_logprobs(policy, packer, seqs), ref, seqs, tol)
        for label, packer in (
            ("shared-prompt packing", SharedPromptPacker(4096, attn)),
            ("plain packing", PlainPacker(4096, attn)),
        )
    ]
    ordered = [g for _, gs in sorted(by_prompt.items()) for g in gs]
    engine_lp = []
    for g, s in zip(ordered, seqs):  # the engine's log-probs, laid out at the predicting positions
        lp = torch.zeros(len(s))
        lp[s.loss_mask] = torch.tensor(g.logprobs, dtype=torch.float32)
        engine_lp.append(lp)
    rows.append(compare("rollout engine (torch) vs model", engine_lp, ref, seqs, tol))
    model.eval()
    return rows


def render(rows, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("check", "tokens", "max |delta|", "mean |delta|", "allowed (max / mean)", "verdict"):
        table.add_column(col, justify="left" if col == "check" else "right")
    for r in rows:
        table.add_row(
            r.name,
            str(r.tokens),
            f"{r.max_delta:.3g}",
            f"{r.mean_delta:.3g}",
            f"{r.tolerance[0]:g} / {r.tolerance[1]:g}",
            "[green]ok[/]" if r.ok else "[red]MISMATCH[/]",
        )
    Console(width=120).print(table)


@click.command("check-model")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Sampling and scoring temperature.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="float32",
    show_default=True,
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="float32 is checked to 2e-4 nats; bf16 / fp16 within a looser bound.",
)
@click.option(
    "--attn-implementation",
    default="auto",
    show_default=True,
    help="As model.attn_implementation in the training config.",
)
def check_model_command(path: str, temperature: float, device: str, dtype: str, attn_implementation: str) -> None:
    """Compare the trainer's per-token log-probs with the model's own forward (exit 1 on a mismatch)."""
    import torch
    from transformers import AutoConfig

    from fastdapo.actor.model_support import choose_attention
    from fastdapo.actor.output_head import UnsupportedModelError
    from fastdapo.models import load_model_and_tokenizer
    from fastdapo.training.setup import DTYPES, resolve_attn

    dev = torch.device(device)
    if not (Path(path) / "config.json").exists():
        raise click.ClickException(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        attn = choose_attention(
            AutoConfig.from_pretrained(path), attn_implementation, resolve_attn(attn_implementation, dev)
        )
        model, tokenizer = load_model_and_tokenizer(path, dtype=DTYPES[dtype], attn_implementation=attn)
        rows = run_checks(model.to(dev), tokenizer, temperature)
    except (UnsupportedModelError, FileNotFoundError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    render(rows, f"{type(model).__name__} ({path}), {dtype}, attention {attn}, T={temperature:g}")
    if not all(r.ok for r in rows):
        click.echo("the trainer's path disagrees with the model: training it would be silently wrong", err=True)
        sys.exit(1)
