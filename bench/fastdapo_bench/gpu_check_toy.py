"""GPU check part (c): a few self-contained toy DAPO steps in bf16 with the Triton loss kernel.

Only torch + transformers + the kernels package: a random tiny Qwen2, a character codec, sampled
groups, a rule reward, group advantages and the fused loss with plain AdamW.  Sequences are packed
into one row with reset position_ids under flash-attention varlen when flash_attn is importable,
right-padded with an attention mask under SDPA otherwise (SDPA does not isolate packed sequences).
"""

from __future__ import annotations

import importlib.util
import math
import random
import string
import time

import torch

from .gpu_check_common import Budget, OutOfTime, PartResult, kernels_module, md_table

PAD, EOS = 0, 1
CHARS = string.digits + string.ascii_letters + " +=:.\n"
STOI = {c: i + 2 for i, c in enumerate(CHARS)}
LOGPROB_TOL = 2e-2  # bf16: the update's log-probs vs the rollout-time ones on the same weights


def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


def decode(ids) -> str:
    return "".join(CHARS[i - 2] for i in ids if 2 <= i < len(CHARS) + 2)  # ids past the codec: junk tokens


def reward(text: str, answer: int) -> float:
    """1 for the right "Answer: N"; shaped below that so an untrained model's groups still vary."""
    if f"Answer: {answer}" in text:
        return 1.0
    return 0.0 if any(c.isdigit() for c in text) else -1.0


def build_model(device, dtype, attn: str, hidden: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    vocab = 128  # covers the codec; a multiple of 64 like real vocabularies
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=EOS,
        attn_implementation=attn,
    )
    return Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)


@torch.no_grad()
def sample(model, prompts: torch.Tensor, max_new: int, gen: torch.Generator) -> list[list[int]]:
    """Responses (token lists ending at the first EOS) for equal-length prompt rows; no KV cache."""
    ids = prompts
    for _ in range(max_new):
        logits = model(input_ids=ids).logits[:, -1].float()
        nxt = torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=gen).to(ids.device)
        ids = torch.cat([ids, nxt], 1)
    out = []
    for row in ids[:, prompts.shape[1] :].tolist():
        out.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return out


def response_hidden(model, seqs: list[list[int]], prompt_len: int, packed: bool):
    """Final hidden states at the positions that predict response tokens: ([n, H], targets [n])."""
    device = model.device
    if packed:  # one row, position_ids restart per sequence: flash-attention varlen
        ids = torch.tensor([t for s in seqs for t in s], device=device)[None]
        pos = torch.tensor([p for s in seqs for p in range(len(s))], device=device)[None]
        hid = model.model(input_ids=ids, position_ids=pos).last_hidden_state[0]
        starts = torch.tensor([0] + [len(s) for s in seqs[:-1]]).cumsum(0).tolist()
        rows = [st + p for st, s in zip(starts, seqs) for p in range(prompt_len - 1, len(s) - 1)]
        return hid[rows], ids[0, [r + 1 for r in rows]]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs], device=device)
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    hid = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
    index = [(b, p) for b, s in enumerate(seqs) for p in range(prompt_len - 1, len(s) - 1)]
    bi, pi = (torch.tensor(x, device=device) for x in zip(*index))
    return hid[bi, pi], ids[bi, pi + 1]


def attention_choice(device) -> str:
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def toy_step(model, opt, rng, gen, prompts_per_step, group, packed, max_new):
    """One rollout + update; returns a dict of checks and stats."""
    K = kernels_module()
    problems = [(rng.randrange(10, 50), rng.randrange(10, 50)) for _ in range(prompts_per_step)]
    texts = [f"{a}+{b}=" for a, b in problems for _ in range(group)]
    prompts = torch.tensor([encode(t) for t in texts], device=model.device)
    t0 = time.perf_counter()
    model.eval()
    responses = sample(model, prompts, max_new, gen)
    seqs = [encode(t) + r for t, r in zip(texts, responses)]
    rewards = torch.tensor(
        [reward(decode(r), a + b) for r, (a, b) in zip(responses, [p for p in problems for _ in range(group)])]
    )
    grouped = rewards.view(prompts_per_step, group)
    seq_adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)).view(-1)
    lengths = [len(r) for r in responses]
    adv = seq_adv.repeat_interleave(torch.tensor(lengths)).to(model.device)
    w = model.lm_head.weight
    with torch.no_grad():  # the rollout-time ("old") log-probs, from a separate forward pass
        hid, targets = response_hidden(model, seqs, prompts.shape[1], packed)
        old, _ = K.linear_logprobs(hid, w, targets, impl="triton")
    model.train()
    hid, targets = response_hidden(model, seqs, prompts.shape[1], packed)
    mask = torch.ones_like(targets, dtype=torch.bool)
    loss, stats = K.fused_linear_dapo_loss(hid, w, targets, old, adv, mask, impl="triton")
    same_hidden, _ = K.linear_logprobs(hid.detach(), w, targets, impl="triton")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
    opt.step()
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return {
        "loss": loss.item(),
        "grad_norm": grad_norm,
        "reward_mean": rewards.mean().item(),
        "tokens": int(targets.numel()),
        "nonzero_adv_frac": (adv != 0).float().mean().item(),
        "old_vs_update": (old - stats["logprobs"]).abs().max().item(),
        "same_hidden": (same_hidden - stats["logprobs"]).abs().max().item(),
        "clip_frac": (stats["clip_frac_low"] + stats["clip_frac_high"]).item(),
        "seconds": time.perf_counter() - t0,
    }


def run_toy_check(result: PartResult, device, budget: Budget, cpu: bool):
    steps, prompts_per_step, group, hidden, max_new = (1, 2, 4, 64, 8) if cpu else (5, 8, 8, 256, 12)
    attn = attention_choice(device)
    packed = attn == "flash_attention_2"
    model = build_model(device, torch.bfloat16, attn, hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    result.lines.append(
        f"{steps} step(s), {prompts_per_step} prompts x {group} samples, tiny Qwen2 (H={hidden}, "
        f"2 layers) bf16 on {device.type}, attention **{attn}** "
        f"({'packed varlen' if packed else 'right-padded'}), fused loss impl=triton, AdamW."
    )
    table = []
    for i in range(steps):
        if budget.left() < 0:
            raise OutOfTime(f"stopped before toy step {i}")
        s = toy_step(model, opt, rng, gen, prompts_per_step, group, packed, max_new)
        finite = math.isfinite(s["loss"]) and math.isfinite(s["grad_norm"])
        on_policy = s["old_vs_update"] <= LOGPROB_TOL and s["same_hidden"] <= LOGPROB_TOL
        for k, v in s.items():
            result.add(f"step {i}", k, v)
        result.add(f"step {i}", "finite", finite, ok=finite)
        result.add(f"step {i}", "on_policy_logprobs", on_policy, ok=on_policy, detail=f"tol {LOGPROB_TOL}")
        table.append(
            [
                i,
                f"{s['loss']:.4g}",
                f"{s['grad_norm']:.3g}",
                f"{s['reward_mean']:.2f}",
                s["tokens"],
                f"{s['old_vs_update']:.1e}",
                f"{s['same_hidden']:.1e}",
                f"{s['clip_frac']:.3f}",
                f"{s['seconds']:.2f}",
                "ok" if finite and on_policy else "FAIL",
            ]
        )
    result.lines += md_table(
        [
            "step",
            "loss",
            "grad norm",
            "reward",
            "tokens",
            "|old-new| logp",
            "|linear_logprobs-stats| logp",
            "clip frac",
            "s",
            "verdict",
        ],
        table,
    )
    ok = sum(r[-1] == "ok" for r in table)
    result.summary.append(f"{ok}/{len(table)} steps finite and on-policy; attention {attn}")
