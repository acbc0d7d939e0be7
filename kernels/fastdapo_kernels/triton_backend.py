"""Launchers for the Triton back-end (same interface as ``torch_chunked``)."""

from __future__ import annotations

import torch
import triton

from . import triton_bwd, triton_fwd
from .logit_head import LogitHead
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


def _head_args(head: LogitHead, bias):
    """Runtime scalars and constexpr flags of the logit transform (plain head: no extra work)."""
    scalars = (head.z_scale, head.cap_in, head.cap_out)
    flags = {"HAS_BIAS": bias is not None, "SOFTCAP": head.softcap is not None}
    return scalars, flags


def _row_stats(hidden, weight, bias, targets, head: LogitHead):
    """Forward kernels; returns dict of [N] float32 outputs (lse, logp, entropy)."""
    n, hdim = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    f32 = dict(dtype=torch.float32, device=dev)
    out = {k: torch.empty(n, **f32) for k in ("lse", "logp", "entropy")}
    if n == 0:
        return out
    split_v = _split_v(n, vocab, dev)
    n_splits = triton.cdiv(vocab, split_v)
    pm, ps, pa = (torch.empty(n, n_splits, **f32) for _ in range(3))
    z_tgt = torch.empty(n, **f32)
    scalars, flags = _head_args(head, bias)
    triton_fwd.partials.launch(
        lambda meta: (triton.cdiv(n, meta["BLOCK_M"]) * n_splits,),
        hidden,
        weight,
        z_tgt if bias is None else bias,
        targets,
        pm,
        ps,
        pa,
        z_tgt,
        n,
        vocab,
        hdim,
        hidden.stride(0),
        weight.stride(0),
        *scalars,
        split_v,
        n_splits,
        **flags,
        PRECISION=dot_precision(hidden.dtype),
        DOT_F32=interpreting(),
    )
    triton_fwd.combine.launch(
        lambda meta: (triton.cdiv(n, COMBINE_BLOCK),),
        pm,
        ps,
        pa,
        z_tgt,
        out["lse"],
        out["logp"],
        out["entropy"],
        n,
        n_splits,
        BLOCK=COMBINE_BLOCK,
        SPLITS=triton.next_power_of_2(n_splits),
    )
    return out


def logprobs(hidden, weight, targets, head: LogitHead, bias=None):
    out = _row_stats(hidden, weight, bias, targets, head)
    return out["logp"], out["entropy"]


def loss_forward(hidden, weight, bias, targets, inputs, head: LogitHead, need):
    """Kernels give lse/logp/entropy; the elementwise loss terms come from ``inputs.terms``."""
    out = _row_stats(hidden, weight, bias, targets, head)
    terms = inputs.terms(out["logp"])
    saved = ()
    if need["dh"] or need["dw"] or need["db"]:
        saved = (hidden, weight, targets, terms.grad_logp, out["lse"])
        saved += () if bias is None else (bias,)
    return terms, out["logp"], out["entropy"], saved


def loss_backward(saved, grad_out, meta):
    hidden, weight, targets, g, lse = saved[:5]
    bias = saved[5] if len(saved) > 5 else None
    n, hdim = hidden.shape
    vocab = weight.shape[0]
    need = meta["need"]
    g = g * grad_out.to(torch.float32)
    order = torch.sort((g == 0).to(torch.int8), stable=True).indices
    n_active = (g != 0).sum().to(torch.int32).reshape(1)
    f32 = dict(dtype=torch.float32, device=hidden.device)
    dh = torch.zeros(n, hdim, **f32) if need["dh"] else torch.zeros(1, **f32)
    dw = torch.zeros(vocab, hdim, **f32) if need["dw"] else torch.zeros(1, **f32)
    db = torch.zeros(vocab, **f32) if need["db"] else torch.zeros(1, **f32)
    scalars, flags = _head_args(meta["head"], bias)
    if n > 0:
        triton_bwd.backward.launch(
            lambda m: (triton.cdiv(n, m["BLOCK_M"]) * triton.cdiv(vocab, m["BLOCK_N"]),),
            hidden,
            weight,
            db if bias is None else bias,
            targets,
            g,
            lse,
            order,
            n_active,
            dh,
            dw,
            db,
            n,
            vocab,
            hdim,
            hidden.stride(0),
            weight.stride(0),
            *scalars,
            NEED_DH=need["dh"],
            NEED_DW=need["dw"],
            NEED_DB=need["db"],
            **flags,
            PRECISION=dot_precision(hidden.dtype),
            DOT_F32=interpreting(),
        )
    return (
        dh.to(hidden.dtype) if need["dh"] else None,
        dw.to(weight.dtype) if need["dw"] else None,
        db.to(meta["bias_dtype"]) if need["db"] else None,
    )
