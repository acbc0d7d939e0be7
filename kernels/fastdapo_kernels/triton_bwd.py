"""Triton backward: token-sparse recompute of the logit tiles, dH and dW with fp32 atomics.

Rows with g_t == 0 are compacted away first (a stable sort puts the active rows in front; their
count stays on the device, so there is no host sync).  Grid: (active row block, vocabulary tile),
in GEMM-style grouped order so that neighbouring programs share hidden rows and weight tiles in
L2.  Programs whose row block lies past the active count exit at once, so masked, clipped or
zero-advantage tokens cost no GEMM work.  Each program

  1. recomputes the logit tile z (bias, scale, soft-cap as in triton_fwd; fp32 accumulation),
  2. forms dz0 = g (onehot(y) - exp(z - lse)) dz/dz0 from the forward's row lse, with dz/dz0 =
     z_scale, or cap_in * cap_out * (1 - tanh^2) when soft-capping,
  3. adds dz0 @ W_tile into dH[rows], dz0^T @ H[rows] into dW[tile] and the column sums of dz0
     into db[tile] (fp32 atomics, K-blocked).

Atomics are the price of never holding an [N, V] buffer; their number is N*H*(V/BLOCK_N) +
V*H*(N_active/BLOCK_M), i.e. one per BLOCK-sized dot product, and both targets (dH [N, H],
dW [V, H], fp32) are the O(N*H + V*H) memory floor.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_util import build_kernel


def bwd_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    g_ptr,
    lse_ptr,
    order_ptr,
    n_active_ptr,
    dh_ptr,
    dw_ptr,
    db_ptr,
    n_rows,
    vocab,
    hdim,
    stride_h,
    stride_w,
    z_scale,
    cap_in,
    cap_out,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    NEED_DH: tl.constexpr,
    NEED_DW: tl.constexpr,
    NEED_DB: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    pid = tl.program_id(0)
    num_m = tl.cdiv(n_rows, BLOCK_M)
    num_n = tl.cdiv(vocab, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m
    n_active = tl.load(n_active_ptr)
    if pid_m * BLOCK_M >= n_active:
        return
    slots = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = slots < n_active
    rows64 = tl.load(order_ptr + slots, mask=row_ok, other=0).to(tl.int64)
    g = tl.load(g_ptr + rows64, mask=row_ok, other=0.0)
    lse = tl.load(lse_ptr + rows64, mask=row_ok, other=0.0)
    tgt = tl.load(tgt_ptr + rows64, mask=row_ok, other=-1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < vocab
    cols64 = cols.to(tl.int64)

    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, hdim, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < hdim
        h = tl.load(h_ptr + rows64[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols64[None, :] * stride_w + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
        if DOT_F32:  # interpreter: its bf16 dot is wrong, so multiply in fp32
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, w, acc, input_precision=PRECISION)
    if HAS_BIAS:  # the logit transform of triton_fwd, kept in sync with it
        acc += tl.load(b_ptr + cols64, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if SOFTCAP:
        th = 2.0 * tl.sigmoid(2.0 * cap_in * acc) - 1.0
        p = tl.exp(th * cap_out - lse[:, None])
    else:
        p = tl.exp(acc * z_scale - lse[:, None])
    onehot = (cols[None, :] == tgt[:, None]).to(tl.float32)
    if SOFTCAP:
        dz = (onehot - p) * g[:, None] * ((cap_in * cap_out) * (1.0 - th * th))
    else:
        dz = (onehot - p) * (g * z_scale)[:, None]
    dz = tl.where(col_ok[None, :] & row_ok[:, None], dz, 0.0)
    if NEED_DB:
        tl.atomic_add(db_ptr + cols64, tl.sum(dz, axis=0), mask=col_ok)
    dz_in = dz.to(h_ptr.dtype.element_ty)
    if DOT_F32:
        dz_in = dz_in.to(tl.float32)

    for k0 in range(0, hdim, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < hdim
        if NEED_DH:
            w_t = tl.load(
                w_ptr + cols64[:, None] * stride_w + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0
            )
            if DOT_F32:
                w_t = w_t.to(tl.float32)
            part_h = tl.dot(dz_in, w_t, input_precision=PRECISION)
            tl.atomic_add(dh_ptr + rows64[:, None] * hdim + ks[None, :], part_h, mask=row_ok[:, None] & k_ok[None, :])
        if NEED_DW:
            h_t = tl.load(
                h_ptr + rows64[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0
            )
            if DOT_F32:
                h_t = h_t.to(tl.float32)
            part_w = tl.dot(tl.trans(dz_in), h_t, input_precision=PRECISION)
            tl.atomic_add(dw_ptr + cols64[:, None] * hdim + ks[None, :], part_w, mask=col_ok[:, None] & k_ok[None, :])


def bwd_configs():
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in [
            (128, 128, 64, 8, 3),
            (64, 128, 64, 4, 3),
            (128, 64, 64, 4, 3),
            (128, 128, 32, 8, 4),
            (64, 64, 64, 4, 4),
        ]
    ]


backward = build_kernel(
    bwd_kernel,
    bwd_configs,
    key=["hdim", "vocab", "NEED_DH", "NEED_DW", "NEED_DB", "HAS_BIAS", "SOFTCAP", "PRECISION"],
    interpret_meta={"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 2},
    reset_to_zero=["dh_ptr", "dw_ptr", "db_ptr"],
)
