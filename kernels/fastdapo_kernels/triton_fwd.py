"""Triton forward: vocabulary-tiled online log-sum-exp, target gather and entropy in one pass.

Grid: (row block, vocabulary split).  Each program owns BLOCK_M rows and one contiguous vocabulary
range; it walks that range in BLOCK_N tiles, computing the [BLOCK_M, BLOCK_N] logit tile with a
K-loop over the hidden size (fp32 accumulation), and keeps per row a running (max m, sum-exp s,
a = sum e^{z-m} (z-m)).  The tile holding a row's target stores that logit.  Partials are
[N, n_splits] (n_splits is small), so extra memory is O(N), never O(N*V).  A tiny combine kernel
merges the splits into lse, logp and entropy; the elementwise loss terms are then formed from
logp on [N] vectors by ``dapo_math.token_terms`` (one implementation for every back-end).

Logit transforms (see ``logit_head``) are constexpr-gated so the plain head does no extra work:
HAS_BIAS adds the bias tile before scaling, SOFTCAP maps z = cap_out * tanh(cap_in * z0),
otherwise z = z_scale * z0 (logit_scale / T).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_util import NEG_BIG, build_kernel


def fwd_partials_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    pm_ptr,
    ps_ptr,
    pa_ptr,
    zt_ptr,
    n_rows,
    vocab,
    hdim,
    stride_h,
    stride_w,
    z_scale,
    cap_in,
    cap_out,
    split_v,
    n_splits,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid // n_splits
    split = pid % n_splits
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    tgt = tl.load(tgt_ptr + rows64, mask=row_ok, other=-1)
    v_begin = split * split_v
    v_end = tl.minimum(v_begin + split_v, vocab)
    m_i = tl.full([BLOCK_M], NEG_BIG, tl.float32)
    s_i = tl.zeros([BLOCK_M], tl.float32)
    a_i = tl.zeros([BLOCK_M], tl.float32)
    for v0 in range(v_begin, v_end, BLOCK_N):
        cols = v0 + tl.arange(0, BLOCK_N)
        col_ok = cols < v_end
        cols64 = cols.to(tl.int64)
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(0, hdim, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < hdim
            h = tl.load(
                h_ptr + rows64[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0
            )
            w = tl.load(
                w_ptr + cols64[None, :] * stride_w + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0
            )
            if DOT_F32:  # interpreter: its bf16 dot is wrong, so multiply in fp32
                h = h.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(h, w, acc, input_precision=PRECISION)
        # logit transform, written out again in triton_bwd (a shared @jit helper would be
        # decorated at import time, before the interpreter switch is known)
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols64, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if SOFTCAP:  # tanh from sigmoid: a primitive of both the compiler and the interpreter
            z = (2.0 * tl.sigmoid(2.0 * cap_in * acc) - 1.0) * cap_out
        else:
            z = acc * z_scale
        z = tl.where(col_ok[None, :], z, NEG_BIG)
        hit = cols[None, :] == tgt[:, None]
        z_tgt = tl.sum(tl.where(hit, z, 0.0), axis=1)
        in_tile = (tgt >= v0) & (tgt < v0 + BLOCK_N) & (tgt < v_end)
        tl.store(zt_ptr + rows64, z_tgt, mask=row_ok & in_tile)
        m_new = tl.maximum(m_i, tl.max(z, axis=1))
        alpha = tl.exp(m_i - m_new)
        zs = z - m_new[:, None]
        e = tl.exp(zs)
        a_i = alpha * (a_i + s_i * (m_i - m_new)) + tl.sum(e * zs, axis=1)
        s_i = alpha * s_i + tl.sum(e, axis=1)
        m_i = m_new
    offs = rows64 * n_splits + split
    tl.store(pm_ptr + offs, m_i, mask=row_ok)
    tl.store(ps_ptr + offs, s_i, mask=row_ok)
    tl.store(pa_ptr + offs, a_i, mask=row_ok)


def fwd_combine_kernel(
    pm_ptr,
    ps_ptr,
    pa_ptr,
    zt_ptr,
    lse_ptr,
    lp_ptr,
    ent_ptr,
    n_rows,
    n_splits,
    BLOCK: tl.constexpr,
    SPLITS: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    sp = tl.arange(0, SPLITS)
    ok2 = row_ok[:, None] & (sp < n_splits)[None, :]
    offs = rows64[:, None] * n_splits + sp[None, :]
    m = tl.load(pm_ptr + offs, mask=ok2, other=NEG_BIG)
    s = tl.load(ps_ptr + offs, mask=ok2, other=0.0)
    a = tl.load(pa_ptr + offs, mask=ok2, other=0.0)
    m_row = tl.where(row_ok, tl.max(m, axis=1), 0.0)
    dm = m - m_row[:, None]
    scale = tl.exp(dm)
    s_row = tl.sum(s * scale, axis=1)
    a_row = tl.sum(scale * (a + s * dm), axis=1)
    s_row = tl.where(row_ok, s_row, 1.0)
    log_s = tl.log(s_row)
    lse = m_row + log_s
    lp = tl.load(zt_ptr + rows64, mask=row_ok, other=0.0) - lse
    tl.store(lse_ptr + rows64, lse, mask=row_ok)
    tl.store(lp_ptr + rows64, lp, mask=row_ok)
    tl.store(ent_ptr + rows64, log_s - a_row / s_row, mask=row_ok)


def fwd_configs():
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in [
            (128, 128, 64, 8, 3),
            (128, 256, 64, 8, 3),
            (64, 128, 64, 4, 4),
            (128, 128, 32, 4, 4),
            (64, 256, 64, 8, 3),
            (128, 64, 64, 4, 4),
        ]
    ]


partials = build_kernel(
    fwd_partials_kernel,
    fwd_configs,
    key=["hdim", "vocab", "HAS_BIAS", "SOFTCAP", "PRECISION"],
    interpret_meta={"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 32},
)
combine = build_kernel(fwd_combine_kernel)
