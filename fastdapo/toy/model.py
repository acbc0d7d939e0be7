"""Tiny Qwen2 for the built-in tasks, warm-started by a short supervised stage (cached on disk).

The warm start imitates a sloppy teacher: with probability `sft_format_noise` it writes
"The answer is N." instead of the required last line "Answer: N" (which the reward rejects), and
with probability `sft_noise` the answer is off by 1 or 2 (the chain task: one worked line is, and the slip
is carried to the answer). The model learns the arithmetic and both phrasings, so sampled accuracy sits well
below 100%; RL has to discover which format and which answers pay, as with a base model that only sometimes
follows the DAPO answer format. The demonstrations come from the task `toy.task` names (`toy.tasks`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastdapo.config.schema import Config
from fastdapo.toy.progress import WarmStartProgress
from fastdapo.toy.spec import MAX_POSITIONS
from fastdapo.toy.tasks import Demo, toy_demo, toy_splits_for
from fastdapo.toy.tokenizer import build_char_tokenizer

log = logging.getLogger(__name__)
TOY_VERSION = 3  # bump when the task, tokenizer or recipe changes so stale caches are not reused
# The default toy run's warm start (1.2 MB), so a first run starts training within seconds instead of
# minutes; `make toy-weights` rebuilds it. Any other toy setting is built on first use and cached.
SHIPPED = Path(__file__).resolve().parent / "warm-start"  # not an identifier: data, not a package


def tiny_qwen2(vocab_size: int, hidden: int, layers: int, heads: int, seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(cfg)


def _cache_key(cfg: Config) -> str:
    t = cfg.toy
    spec = dict(
        v=TOY_VERSION,
        h=t.hidden_size,
        l=t.layers,
        a=t.heads,
        s=t.sft_steps,
        lr=t.sft_lr,
        nz=t.sft_noise,
        fz=t.sft_format_noise,
        op=t.max_operand,
        ev=t.eval_size,
    )
    if t.task != "arithmetic":  # the arithmetic key stays as it was, so its shipped and cached warm starts hold
        spec.update(task=t.task, cs=t.chain_max_steps, cp=t.chain_problems)
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _sft(
    model,
    tokenizer,
    problems,
    steps: int,
    lr: float,
    demo: Demo,
    batch: int = 64,
    on_step: Callable[[float], None] | None = None,
) -> None:
    rng = random.Random(0)
    ids_of: dict[str, list[int]] = {}  # the same few thousand strings recur; encoding them once saves ~5%

    def encode(text: str) -> list[int]:
        if text not in ids_of:
            ids_of[text] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids_of[text]

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    model.train()
    for _ in range(steps):
        rows, masks = [], []
        for problem in rng.sample(problems, min(batch, len(problems))):
            prompt, response = demo(problem, rng)
            p = encode(prompt)
            r = encode(response) + [tokenizer.eos_token_id]
            rows.append(p + r)
            masks.append([0] * len(p) + [1] * len(r))
        width = max(map(len, rows))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        labels = torch.tensor(
            [[t if m else -100 for t, m in zip(r, mk)] + [-100] * (width - len(r)) for r, mk in zip(rows, masks)]
        )
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(loss.item())
    model.eval()


def toy_model_dir(cfg: Config) -> Path:
    """Path of the warm-started toy model: shipped for the default toy run, else built once and cached.
    Processes that need the same one at once (the ranks of a launch) build it once: the first holds a lock
    on the cache directory while it builds, the others wait for it and then find the result."""
    target = Path(cfg.toy.cache_dir) / f"toy-{_cache_key(cfg)}"
    shipped = SHIPPED / target.name
    if (shipped / "config.json").exists():
        return shipped
    if (target / "config.json").exists():
        return target
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _build(cfg, target)
    return target


def _build(cfg: Config, target: Path) -> None:
    log.info("warm-starting the toy model (%d supervised steps, built once; cached at %s)", cfg.toy.sft_steps, target)
    tokenizer = build_char_tokenizer()
    t = cfg.toy
    train, _ = toy_splits_for(t)
    with torch.random.fork_rng(), WarmStartProgress(t.sft_steps, enabled=cfg.run.progress) as progress:
        # fork_rng: building the cache must not move the run's global RNG (reproducibility)
        model = tiny_qwen2(len(tokenizer), t.hidden_size, t.layers, t.heads)
        _sft(model, tokenizer, train, t.sft_steps, t.sft_lr, toy_demo(t), on_step=progress.step)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-toy-"))
    # written directly: under a process group transformers' save_pretrained writes weights on rank 0 only,
    # and whichever rank of a launch takes the lock first builds
    from safetensors.torch import save_file

    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight")  # stored once, under the embedding's name, as transformers does
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier build (no config.json)
    os.replace(tmp, target)  # atomic: a reader sees the whole directory or none
