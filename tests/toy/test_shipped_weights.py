"""The default toy run's warm start ships with the package, so a first run skips the supervised stage."""

from __future__ import annotations

import time

from transformers import AutoModelForCausalLM

from fastdapo.config import load_config
from fastdapo.toy.model import SHIPPED, _cache_key, toy_model_dir


def test_default_toy_run_uses_the_shipped_warm_start(tmp_path):
    cfg = load_config(None, [f"toy.cache_dir={tmp_path}"])
    t0 = time.perf_counter()
    path = toy_model_dir(cfg)
    assert path == SHIPPED / f"toy-{_cache_key(cfg)}"
    assert time.perf_counter() - t0 < 1.0  # found, not trained
    assert not any(tmp_path.iterdir())  # nothing built into the cache
    model = AutoModelForCausalLM.from_pretrained(path)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (
        cfg.toy.hidden_size,
        cfg.toy.layers,
        cfg.toy.heads,
    )


def test_other_toy_settings_do_not_reuse_the_shipped_weights(tmp_path):
    cfg = load_config(None, [f"toy.cache_dir={tmp_path}", "toy.sft_steps=3", "toy.hidden_size=16", "toy.heads=2"])
    path = toy_model_dir(cfg)
    assert path.parent == tmp_path and (path / "model.safetensors").exists()
    assert not (SHIPPED / path.name).exists()
