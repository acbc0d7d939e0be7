"""Pure-PyTorch chunked back-end: O(chunk*V) extra memory, never the full [N, V] logits.

Rows are processed in chunks.  For each chunk we form the logits, the row log-sum-exp, the target
log-prob and the entropy; the loss is elementwise in logp, so the gradient coefficient g_t is known
right away and the gradient is computed in the same pass (no recompute in backward):

    dz = g (onehot(y) - p) / T,   dH[rows] = dz W,   dW += dz^T H[rows]   (dW in float32)

Rows with g_t == 0 (masked, clipped, zero advantage) are dropped before the two GEMMs.
Stored between forward and backward: dH [N, H] and dW [V, H], i.e. O(N*H + V*H).
"""

from __future__ import annotations

import os

import torch

from .dapo_math import ClipConfig, TokenTerms, token_terms


# The ratio is formed per chunk from the chunk's own log-probs, so on-policy calls need no old pass.
ON_POLICY_NATIVE = True

# Elements of the [rows, V] float32 logits buffer (plus a quarter of that for the exp tile).
CHUNK_ELEMENTS = int(os.environ.get("FASTDAPO_CHUNK_ELEMENTS", 1 << 25))
EXP_TILES = 4  # row tiles per chunk in the softmax pass


def chunk_rows(n_rows: int, vocab: int, chunk_elements: int | None = None) -> int:
    """Rows per chunk so that the [rows, V] buffer holds about ``chunk_elements`` values."""
    budget = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    rows = max(1, budget // max(vocab, 1))
    if rows >= 16:
        rows -= rows % 16
    return max(1, min(n_rows, rows))


class _Workspace:
    """Reused buffers (fresh big allocations cost page faults on every chunk): the [rows, V]
    logits and a [rows / EXP_TILES, V] tile for their exponentials."""

    def __init__(self, rows, vocab, device):
        self.z = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        self.e = torch.empty(-(-rows // EXP_TILES), vocab, dtype=torch.float32, device=device)


def _chunk_softmax(h, weight, tgt, inv_temp, ws: _Workspace):
    """Fill ws.z[:c] with e = exp(z - max) in place; return (e, sum-exp, logp, entropy).

    The exponentials are taken tile by tile of rows into a small buffer, which gives
    sum e * (z - max) (for the entropy) before e overwrites the logits.
    """
    c = h.shape[0]
    z = ws.z[:c]
    if h.dtype == torch.float32:
        torch.mm(h, weight.t(), out=z)
    else:
        z.copy_(h @ weight.t())
    if inv_temp != 1.0:
        z.mul_(inv_temp)
    z.sub_(z.amax(dim=1, keepdim=True))
    z_tgt = z.gather(1, tgt.unsqueeze(1)).squeeze(1)
    sumexp = torch.empty(c, dtype=torch.float32, device=z.device)
    ez = torch.empty_like(sumexp)
    step = ws.e.shape[0]
    for r0 in range(0, c, step):
        zt = z[r0:r0 + step]
        e = ws.e[:zt.shape[0]]
        torch.exp(zt, out=e)
        sumexp[r0:r0 + step] = e.sum(dim=1)
        ez[r0:r0 + step] = torch.bmm(e.unsqueeze(1), zt.unsqueeze(2)).view(-1)
        zt.copy_(e)
    log_s = torch.log(sumexp)
    return z, sumexp, z_tgt - log_s, log_s - ez / sumexp


def logprobs(hidden, weight, targets, temperature=1.0, chunk_elements=None):
    """Forward-only (logprobs, entropy), float32 [N] each."""
    n = hidden.shape[0]
    out_lp = torch.empty(n, dtype=torch.float32, device=hidden.device)
    out_ent = torch.empty_like(out_lp)
    step = chunk_rows(n, weight.shape[0], chunk_elements)
    ws = _Workspace(step, weight.shape[0], hidden.device)
    with torch.no_grad():
        for start in range(0, n, step):
            sl = slice(start, start + step)
            _, _, out_lp[sl], out_ent[sl] = _chunk_softmax(hidden[sl], weight, targets[sl],
                                                          1.0 / temperature, ws)
    return out_lp, out_ent


def loss_forward(hidden, weight, targets, old_logprobs, advantages, mask, clip: ClipConfig,
                 inv_norm, temperature=1.0, need_dh=True, need_dw=True, chunk_elements=None):
    """Returns (terms: TokenTerms, logp, entropy, saved) with saved = (dH or None, dW32 or None)."""
    n, _ = hidden.shape
    vocab = weight.shape[0]
    inv_temp = 1.0 / temperature
    dev = hidden.device
    logp_all = torch.empty(n, dtype=torch.float32, device=dev)
    ent_all = torch.empty_like(logp_all)
    obj_all = torch.empty_like(logp_all)
    g_all = torch.empty_like(logp_all)
    code_all = torch.empty(n, dtype=torch.int8, device=dev)
    grads = {"dh": torch.zeros_like(hidden) if need_dh else None, "dw": None}
    step = chunk_rows(n, vocab, chunk_elements)
    ws = _Workspace(step, vocab, dev)
    with torch.no_grad():
        for start in range(0, n, step):
            sl = slice(start, start + step)
            h, tgt = hidden[sl], targets[sl]
            e, s, lp, ent = _chunk_softmax(h, weight, tgt, inv_temp, ws)
            old = None if old_logprobs is None else old_logprobs[sl]
            t = token_terms(lp, old, advantages[sl], mask[sl], clip, inv_norm)
            logp_all[sl], ent_all[sl] = lp, ent
            obj_all[sl], g_all[sl], code_all[sl] = t.objective, t.grad_logp, t.clip_code
            if need_dh or need_dw:
                _chunk_grad(e, s, t.grad_logp, h, tgt, weight, inv_temp, start, grads, need_dw)
    dw = grads["dw"]
    if need_dw and dw is None:  # no token carried a gradient
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=dev)
    return TokenTerms(obj_all, g_all, code_all), logp_all, ent_all, (grads["dh"], dw)


def _chunk_grad(e, sumexp, g, h, tgt, weight, inv_temp, row0, grads, need_dw):
    """Add the chunk's dH rows and dW, skipping rows with g == 0; ``e`` is overwritten.

    dz = g (onehot(y) - e/S) / T is built in place in ``e`` after moving the active rows to the
    front (in order, so no row is overwritten before it is moved).
    """
    active = torch.nonzero(g).squeeze(1)
    k = active.numel()
    if k == 0:
        return
    if k < g.numel():
        for dst, src in enumerate(active.tolist()):
            if dst != src:
                e[dst].copy_(e[src])
        sumexp, g, h, tgt = (x.index_select(0, active) for x in (sumexp, g, h, tgt))
    dz = e[:k]
    gt = g * inv_temp
    dz.mul_((-gt / sumexp).unsqueeze(1))  # -g p / T
    dz[torch.arange(k, device=dz.device), tgt] += gt  # + g onehot / T
    if grads["dh"] is not None:
        dh = grads["dh"]
        dh.index_copy_(0, active + row0, (dz.to(weight.dtype) @ weight).to(dh.dtype))
    if need_dw:
        hf = h.float()
        if grads["dw"] is None:
            grads["dw"] = dz.t() @ hf  # first contribution: no zero-fill pass over [V, H]
        else:
            grads["dw"].addmm_(dz.t(), hf)


def loss_backward(saved, grad_out, meta):
    """Scale the stored gradients by the upstream gradient (0-d tensor)."""
    dh, dw = saved
    unit = bool(torch.equal(grad_out, torch.ones_like(grad_out)))
    if dh is not None and not unit:
        dh = dh * grad_out.to(dh.dtype)
    if dw is not None:
        if not unit:
            dw = dw * grad_out
        dw = dw.to(meta["weight_dtype"])
    return dh, dw
