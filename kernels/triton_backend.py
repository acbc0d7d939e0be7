"""Launchers for the Triton back-end (same interface as ``torch_chunked``)."""

from __future__ import annotations

import torch
import triton

from . import triton_bwd, triton_fwd
from .dapo_math import ClipConfig, TokenTerms
from .triton_util import dot_precision, interpreting, num_sms

COMBINE_BLOCK = 128
# Interpreter only: vocabulary columns per split (small, so tests exercise the split combine).
INTERPRET_SPLIT_V = 256


def _split_v(n_rows: int, vocab: int, device) -> int:
    """Vocabulary columns per forward program: enough programs to fill the GPU, few partials."""
    if interpreting():
        return INTERPRET_SPLIT_V
    row_blocks = triton.cdiv(n_rows, 128)
    wanted = triton.cdiv(4 * num_sms(device), row_blocks)
    n_splits = max(1, min(wanted, triton.cdiv(vocab, 256), 64))
    return triton.cdiv(triton.cdiv(vocab, n_splits), 256) * 256


def _row_stats(hidden, weight, targets, temperature, loss_args=None):
    """Forward kernels; returns dict of [N] outputs (lse, logp, entropy[, obj, g, code])."""
    n, hdim = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    f32 = dict(dtype=torch.float32, device=dev)
    out = {k: torch.empty(n, **f32) for k in ("lse", "logp", "entropy", "obj", "g")}
    out["code"] = torch.empty(n, dtype=torch.int8, device=dev)
    if n == 0:
        return out
    split_v = _split_v(n, vocab, dev)
    n_splits = triton.cdiv(vocab, split_v)
    pm, ps, pa = (torch.empty(n, n_splits, **f32) for _ in range(3))
    z_tgt = torch.empty(n, **f32)
    triton_fwd.partials.launch(
        lambda meta: (triton.cdiv(n, meta["BLOCK_M"]) * n_splits,),
        hidden, weight, targets, pm, ps, pa, z_tgt,
        n, vocab, hdim, hidden.stride(0), weight.stride(0), 1.0 / temperature, split_v, n_splits,
        PRECISION=dot_precision(hidden.dtype), DOT_F32=interpreting())
    with_loss = loss_args is not None
    if with_loss:
        old, adv, mask, clip, inv_norm = loss_args
        mask8 = mask.to(torch.int8)
        lo, hi = 1.0 - clip.eps_low, 1.0 + clip.eps_high
        dual = clip.dual_clip if clip.dual_clip is not None else 0.0
    else:
        old = adv = mask8 = inv_norm = z_tgt  # unused placeholders
        lo = hi = dual = 0.0
    triton_fwd.combine.launch(
        lambda meta: (triton.cdiv(n, COMBINE_BLOCK),),
        pm, ps, pa, z_tgt, old, adv, mask8, inv_norm,
        out["lse"], out["logp"], out["entropy"], out["obj"], out["g"], out["code"],
        n, n_splits, lo, hi, dual,
        BLOCK=COMBINE_BLOCK, SPLITS=triton.next_power_of_2(n_splits), WITH_LOSS=with_loss,
        USE_DUAL=with_loss and clip.dual_clip is not None)
    return out


def logprobs(hidden, weight, targets, temperature=1.0):
    out = _row_stats(hidden, weight, targets, temperature)
    return out["logp"], out["entropy"]


def loss_forward(hidden, weight, targets, old_logprobs, advantages, mask, clip: ClipConfig,
                 inv_norm, temperature=1.0, need_dh=True, need_dw=True):
    inv_norm = inv_norm.reshape(1).to(device=hidden.device, dtype=torch.float32)
    out = _row_stats(hidden, weight, targets, temperature,
                     (old_logprobs, advantages, mask, clip, inv_norm))
    terms = TokenTerms(out["obj"], out["g"], out["code"])
    saved = (hidden, weight, targets, out["g"], out["lse"]) if (need_dh or need_dw) else ()
    return terms, out["logp"], out["entropy"], saved


def loss_backward(saved, grad_out, meta):
    hidden, weight, targets, g, lse = saved
    n, hdim = hidden.shape
    vocab = weight.shape[0]
    need_dh, need_dw = meta["need_dh"], meta["need_dw"]
    g = g * grad_out.to(torch.float32)
    order = torch.sort((g == 0).to(torch.int8), stable=True).indices
    n_active = (g != 0).sum().to(torch.int32).reshape(1)
    f32 = dict(dtype=torch.float32, device=hidden.device)
    dh = torch.zeros(n, hdim, **f32) if need_dh else torch.zeros(1, **f32)
    dw = torch.zeros(vocab, hdim, **f32) if need_dw else torch.zeros(1, **f32)
    if n > 0:
        triton_bwd.backward.launch(
            lambda m: (triton.cdiv(n, m["BLOCK_M"]) * triton.cdiv(vocab, m["BLOCK_N"]),),
            hidden, weight, targets, g, lse, order, n_active, dh, dw,
            n, vocab, hdim, hidden.stride(0), weight.stride(0), 1.0 / meta["temperature"],
            NEED_DH=need_dh, NEED_DW=need_dw, PRECISION=dot_precision(hidden.dtype),
            DOT_F32=interpreting())
    return (dh.to(hidden.dtype) if need_dh else None,
            dw.to(weight.dtype) if need_dw else None)
