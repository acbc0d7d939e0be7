"""Loading a local Hugging Face model directory (never from a hub)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

_GENERIC_FAST = {"TokenizersBackend", "PreTrainedTokenizerFast"}


def load_tokenizer(path: str | Path):
    """AutoTokenizer, except for generic fast tokenizers (the built-in char tokenizer): there
    AutoTokenizer would substitute the model family's tokenizer class and tokenize differently."""
    cfg_file = Path(path) / "tokenizer_config.json"
    cls = json.loads(cfg_file.read_text()).get("tokenizer_class") if cfg_file.exists() else None
    tok = (PreTrainedTokenizerFast if cls in _GENERIC_FAST else AutoTokenizer).from_pretrained(str(path))
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(path: str | Path, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation)
    return model, load_tokenizer(path)
