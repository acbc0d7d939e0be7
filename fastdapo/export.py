"""`fastdapo export`: a checkpoint -> a plain Hugging Face model directory.

The output (config.json, generation_config.json, model.safetensors or sharded safetensors with an
index, tokenizer files) loads with `AutoModelForCausalLM` / `AutoTokenizer` and needs neither
DeepSpeed nor fastdapo. ZeRO-0/1/2 checkpoints hold the full weights in the engine's model-state
file; ZeRO-3 ones are consolidated from every rank's shards with DeepSpeed's zero_to_fp32. A LoRA run
exports OUT/adapter (PEFT's adapter directory, fp32) and OUT/merged (the adapters merged into the base).

Checkpoint files are read with `torch.load`, which can run code from the file: export only
checkpoints you (or your own runs) wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import click

MAX_SHARD_BYTES = 5 * 1024**3
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _engine_state_dict(ckpt: Path, manifest: dict) -> dict:
    """The DeepSpeed module's full state dict (keys of `PolicyWithLoss`: the HF model under `model.`)."""
    import torch

    tag = manifest.get("engine_tag", "engine")
    if int(manifest.get("zero_stage", 0)) < 3:
        states = torch.load(ckpt / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        return states["module"]
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=tag)


def hf_state_dict(module_state: dict, tie_word_embeddings: bool) -> dict:
    """Keys of the wrapped causal LM (prefix `model.` stripped); a tied LM head is left to the config."""
    sd = {k[len("model.") :]: v for k, v in module_state.items() if k.startswith("model.")}
    if not sd:
        raise ValueError("the checkpoint has no `model.` parameters (not a fastdapo PolicyWithLoss checkpoint)")
    if tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def _save_file(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # safetensors writes owner-only files; a model directory is for sharing


def _save_safetensors(sd: dict, out: Path, dtype) -> None:
    tensors = {
        k: v.detach().to(dtype).contiguous() if v.is_floating_point() else v.detach().contiguous()
        for k, v in sd.items()
    }
    shards, current, size = [], {}, 0
    for k in sorted(tensors):
        nbytes = tensors[k].numel() * tensors[k].element_size()
        if current and size + nbytes > MAX_SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[k] = tensors[k]
        size += nbytes
    shards.append(current)
    if len(shards) == 1:
        _save_file(shards[0], out / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save_file(shard, out / name)
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )


def export_checkpoint(path: str | Path, out_dir: str | Path, step: int | None = None, dtype: str = "auto") -> Path:
    """Write the checkpoint at `path` (a run directory: latest or `step`; or a checkpoint directory)
    as a Hugging Face model directory `out_dir`; returns the checkpoint used."""
    import torch
    from transformers import AutoConfig

    from fastdapo.actor.lora import has_adapters
    from fastdapo.checkpoint.store import HF_DIR, read_manifest, resolve

    ckpt = resolve(path, step)
    manifest = read_manifest(ckpt)
    hf = ckpt / HF_DIR
    config = AutoConfig.from_pretrained(str(hf))
    name = manifest.get("model_dtype", "float32") if dtype == "auto" else dtype
    torch_dtype = getattr(torch, name)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    sd = hf_state_dict(_engine_state_dict(ckpt, manifest), tied)
    out = Path(out_dir)
    if has_adapters(sd):  # a LoRA run: OUT/adapter (PEFT) and OUT/merged (plain Hugging Face)
        sd = _export_adapter(ckpt, config, sd, out / "adapter", tied)
        out = out / "merged"
    out.mkdir(parents=True, exist_ok=True)
    for f in hf.iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copy2(f, out / f.name)
    config.dtype = torch_dtype
    config.save_pretrained(str(out))
    _save_safetensors(sd, out, torch_dtype)
    (out / "fastdapo_export.json").write_text(
        json.dumps({"checkpoint": str(ckpt.resolve()), "step": manifest.get("step"), "dtype": name}, indent=2)
    )
    return ckpt


def _export_adapter(ckpt: Path, config, sd: dict, adapter_dir: Path, tied: bool) -> dict:
    """Writes the adapters with PEFT's save_pretrained (fp32); returns the merged model's state dict."""
    from fastdapo.actor.lora import peft_model_from_state
    from fastdapo.config.load import load_config

    lora = load_config(ckpt / "config.yaml").model.lora
    model = peft_model_from_state(config, lora, sd)
    model.save_pretrained(str(adapter_dir))
    merged = model.merge_and_unload().state_dict()
    if tied:
        merged.pop("lm_head.weight", None)
    return merged


def is_run_or_checkpoint(path: str | Path) -> bool:
    from fastdapo.checkpoint.store import checkpoint_root, is_checkpoint_dir

    return is_checkpoint_dir(Path(path)) or checkpoint_root(Path(path)) is not None


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--step", type=click.IntRange(min=0), default=None, help="Checkpoint step (default: the latest complete one)."
)
@click.option(
    "--dtype",
    type=click.Choice(_DTYPES),
    default="auto",
    show_default=True,
    help="Weight dtype of the export (auto: the dtype the model was trained in).",
)
def export_command(run_dir: str, out_dir: str, step: int | None, dtype: str) -> None:
    """Export a checkpoint of RUN_DIR (or a checkpoint directory) to OUT_DIR as a plain Hugging Face
    model directory (safetensors + config + tokenizer)."""
    try:
        ckpt = export_checkpoint(run_dir, out_dir, step, dtype)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"exported {ckpt} -> {out_dir}")


def export_to_temp(path: str | Path) -> Path:
    """Export into a fresh temporary Hugging Face model directory (the caller removes it); a LoRA run's
    is its merged model."""
    tmp = Path(tempfile.mkdtemp(prefix="fastdapo-export-"))
    try:
        export_checkpoint(path, tmp)
        merged = tmp / "merged"
        if merged.is_dir():
            shutil.rmtree(tmp / "adapter")
            for f in merged.iterdir():
                f.rename(tmp / f.name)
            merged.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
