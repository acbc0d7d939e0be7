"""Loading a local Hugging Face model directory (never from a hub)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

log = logging.getLogger("fastdapo")
_GENERIC_FAST = {"TokenizersBackend", "PreTrainedTokenizerFast"}


class TokenizerError(ValueError):
    """A tokenizer the trainer cannot use; the message is one line naming its directory."""


def load_tokenizer(path: str | Path):
    """AutoTokenizer, except for generic fast tokenizers (the built-in char tokenizer): there
    AutoTokenizer would substitute the model family's tokenizer class and tokenize differently."""
    cfg_file = Path(path) / "tokenizer_config.json"
    cls = json.loads(cfg_file.read_text()).get("tokenizer_class") if cfg_file.exists() else None
    tok = (PreTrainedTokenizerFast if cls in _GENERIC_FAST else AutoTokenizer).from_pretrained(str(path))
    tok.padding_side = "left"
    if tok.eos_token_id is None:
        if tok.pad_token_id is None:
            raise TokenizerError(
                f"{path}: the tokenizer has neither an EOS nor a pad token; set eos_token in its tokenizer_config.json"
            )
        log.warning(
            "%s: the tokenizer has no EOS token: no response can end, every one runs to the length limit "
            "and is truncated (nothing to learn from with overlong filtering); set eos_token in its "
            "tokenizer_config.json",
            path,
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(path: str | Path, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation)
    return model, load_tokenizer(path)
