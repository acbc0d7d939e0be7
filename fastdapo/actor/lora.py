"""LoRA actor with PEFT: trainable adapters on a frozen base model (LM head included).

`apply_lora` returns the causal LM itself with PEFT's LoRA layers injected (PEFT's own wrapper is
dropped), so the policy, the rollout engines and the checkpoint see an ordinary Hugging Face model
whose only trainable parameters are the adapters. Engines that hold their own copy of the weights
(vLLM) take `merged_named_weights`: W + scale * B @ A under the base model's names.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fastdapo.config.load import ConfigError
from fastdapo.config.schema import LoraConfig
from fastdapo.rollout.weight_stream import DEFAULT_CHUNK_BYTES, named_weights

ADAPTER = "default"  # PEFT's adapter name; one adapter per run
_BASE = ".base_layer."


def peft_lora_config(lora: LoraConfig):
    import peft

    targets = [m.strip() for m in lora.target_modules if m.strip()]
    return peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias="none",
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The short names of the model's linear layers, LM head excluded: what target_modules may name."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linear = (torch.nn.Linear, *_conv1d_classes())
    names = [n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear) and m is not head]
    return list(dict.fromkeys(names))


def _conv1d_classes() -> list[type]:
    try:  # GPT-2 style models write their linear layers as transformers' Conv1D
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return []
    return [Conv1D]


def _adaptable() -> tuple[type, ...]:
    nn = torch.nn
    return (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, *_conv1d_classes())


def check_targets(model: torch.nn.Module, lora: LoraConfig) -> None:
    """One-line ConfigError naming every target_modules entry that matches no module of `model` (PEFT's
    rule: the full module name, or its last dotted parts) or only modules LoRA cannot adapt, with the
    model's linear layers to choose from."""
    targets = [m.strip() for m in lora.target_modules if m.strip()]
    if targets == ["all-linear"]:
        return
    modules = [(n, m) for n, m in model.named_modules() if n]
    problems, unmatched = [], []
    for t in targets:
        hits = [m for n, m in modules if n == t or n.endswith(f".{t}")]
        if not hits:
            unmatched.append(repr(t))
        elif not any(isinstance(m, _adaptable()) for m in hits):
            problems.append(f"{t!r} names {type(hits[0]).__name__}, not a layer LoRA can adapt")
    if unmatched:
        verb = "matches" if len(unmatched) == 1 else "match"
        problems.insert(0, f"{', '.join(unmatched)} {verb} no module of {type(model).__name__}")
    if problems:
        layers = ", ".join(linear_layer_names(model)) or "none"
        raise ConfigError(f"model.lora.target_modules: {'; '.join(problems)}; its linear layers: {layers}")


def apply_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """`model` with LoRA adapters injected in place (everything else frozen); unchanged when rank is 0."""
    if lora.rank <= 0:
        return model
    import peft

    check_targets(model, lora)  # PEFT's own errors are many lines, after the model has loaded
    return peft.get_peft_model(model, peft_lora_config(lora)).get_base_model()


def is_lora(model: torch.nn.Module) -> bool:
    return any(_lora_layer(m) for m in model.modules())


def _lora_layer(module: torch.nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer) and ADAPTER in getattr(module, "lora_A", {})


def lora_summary(model: torch.nn.Module) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total}


def _scalings(model: torch.nn.Module) -> dict[str, float]:
    """Module name (as it prefixes parameter names) -> alpha / r of its adapter."""
    return {name: float(m.scaling[ADAPTER]) for name, m in model.named_modules() if _lora_layer(m)}


def merged_named_weights(
    model: torch.nn.Module, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight of the base model under its plain name (``...q_proj.weight``), adapted layers merged:
    W + scale * B @ A, computed in fp32 and cast to W's dtype; the model is not modified. Without LoRA
    layers this is `weight_stream.named_weights`. Gathered piecewise under ZeRO-3 as named_weights does."""
    scalings = _scalings(model)
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in named_weights(model, chunk_bytes):
        owner, kind = _split(name, scalings)
        if owner is None:
            yield name.replace(_BASE, "."), t  # a base layer's bias keeps its plain name too
            continue
        parts = pending.setdefault(owner, {})
        parts[kind] = t
        if {"weight", "A", "B"} <= parts.keys():
            del pending[owner]
            w = parts["weight"]
            delta = (parts["B"].float() @ parts["A"].float()) * scalings[owner]
            yield f"{owner}.weight", (w.float() + delta).to(w.dtype)
    if pending:
        raise RuntimeError(f"LoRA layers with missing pieces: {sorted(pending)}")


def _split(name: str, scalings: dict[str, float]) -> tuple[str | None, str]:
    """(adapted module, piece) for a LoRA layer's weight or adapter matrix; (None, '') for any other."""
    for marker, kind in (
        (f".lora_A.{ADAPTER}.weight", "A"),
        (f".lora_B.{ADAPTER}.weight", "B"),
        (f"{_BASE}weight", "weight"),
    ):
        if name.endswith(marker):
            owner = name[: -len(marker)]
            if owner in scalings:
                return owner, kind
    return None, ""


def has_adapters(state_dict: dict) -> bool:
    return any(f".lora_A.{ADAPTER}." in k for k in state_dict)


def peft_model_from_state(config, lora: LoraConfig, state_dict: dict):
    """A PEFT model (fp32) of the architecture `config`, holding the base and adapter weights of
    `state_dict` (keys of the adapted causal LM, as `apply_lora` trains it)."""
    import peft
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = peft.get_peft_model(base, peft_lora_config(lora))
    missing, unexpected = model.get_base_model().load_state_dict(state_dict, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"the checkpoint does not match the LoRA model: missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model
