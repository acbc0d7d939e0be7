"""Pure-PyTorch chunked back-end: O(chunk*V) extra memory, never the full [N, V] logits.

Rows are processed in chunks.  For each chunk we form the logits, the row log-sum-exp, the target
log-prob and the entropy; the loss is elementwise in logp, so the gradient coefficient g_t is known
right away and the gradient is computed in the same pass (no recompute in backward):

    dz0 = g (onehot(y) - p) dz/dz0,   dH[rows] = dz0 W,   dW += dz0^T H[rows],   db += sum dz0

(dW, db in float32; dz/dz0 is the scalar logit_scale / T, or per logit with soft-capping, see
``logit_head``).
Rows with g_t == 0 (masked, clipped, zero advantage) are dropped before the two GEMMs.
Stored between forward and backward: dH [N, H], dW [V, H] and db [V], i.e. O(N*H + V*H).
"""

from __future__ import annotations

import os

import torch

from .dapo_math import TokenTerms
from .logit_head import LogitHead

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
    logits, a [rows / EXP_TILES, V] tile for their exponentials and, for soft-capped logits whose
    gradient is needed, dz/dz0 per logit."""

    def __init__(self, rows, vocab, device, deriv=False):
        self.z = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        self.e = torch.empty(-(-rows // EXP_TILES), vocab, dtype=torch.float32, device=device)
        self.d = torch.empty(rows, vocab, dtype=torch.float32, device=device) if deriv else None


def _chunk_softmax(h, weight, bias, tgt, head: LogitHead, ws: _Workspace):
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
    head.apply_(z, bias, None if ws.d is None else ws.d[:c])
    z.sub_(z.amax(dim=1, keepdim=True))
    z_tgt = z.gather(1, tgt.unsqueeze(1)).squeeze(1)
    sumexp = torch.empty(c, dtype=torch.float32, device=z.device)
    ez = torch.empty_like(sumexp)
    step = ws.e.shape[0]
    for r0 in range(0, c, step):
        zt = z[r0 : r0 + step]
        e = ws.e[: zt.shape[0]]
        torch.exp(zt, out=e)
        sumexp[r0 : r0 + step] = e.sum(dim=1)
        ez[r0 : r0 + step] = torch.bmm(e.unsqueeze(1), zt.unsqueeze(2)).view(-1)
        zt.copy_(e)
    log_s = torch.log(sumexp)
    return z, sumexp, z_tgt - log_s, log_s - ez / sumexp


def logprobs(hidden, weight, targets, head: LogitHead, bias=None, chunk_elements=None):
    """Forward-only (logprobs, entropy), float32 [N] each."""
    n = hidden.shape[0]
    out_lp = torch.empty(n, dtype=torch.float32, device=hidden.device)
    out_ent = torch.empty_like(out_lp)
    step = chunk_rows(n, weight.shape[0], chunk_elements)
    ws = _Workspace(step, weight.shape[0], hidden.device)
    with torch.no_grad():
        for start in range(0, n, step):
            sl = slice(start, start + step)
            _, _, out_lp[sl], out_ent[sl] = _chunk_softmax(hidden[sl], weight, bias, targets[sl], head, ws)
    return out_lp, out_ent


def loss_forward(hidden, weight, bias, targets, inputs, head: LogitHead, need, chunk_elements=None):
    """Returns (terms: TokenTerms, logp, entropy, saved) with saved = (dH, dW32, db32), each a
    tensor only when needed; ``inputs`` is an ``autograd.LossInputs``, ``need`` maps dh/dw/db to
    whether that gradient is wanted."""
    n, _ = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    need_grad = need["dh"] or need["dw"] or need["db"]
    logp_all = torch.empty(n, dtype=torch.float32, device=dev)
    ent_all = torch.empty_like(logp_all)
    parts = []
    f32 = dict(dtype=torch.float32, device=dev)
    grads = {
        "dh": torch.zeros_like(hidden) if need["dh"] else None,
        "dw": None,
        "db": torch.zeros(vocab, **f32) if need["db"] else None,
    }
    step = chunk_rows(n, vocab, chunk_elements)
    ws = _Workspace(step, vocab, dev, deriv=need_grad and head.softcap is not None)
    with torch.no_grad():
        for start in range(0, n, step):
            sl = slice(start, start + step)
            h, tgt = hidden[sl], targets[sl]
            e, s, lp, ent = _chunk_softmax(h, weight, bias, tgt, head, ws)
            t = inputs.rows(sl).terms(lp)
            logp_all[sl], ent_all[sl] = lp, ent
            parts.append(t)
            if need_grad:
                _chunk_grad(e, s, t.grad_logp, h, tgt, weight, head, ws, start, grads, need["dw"])
    fields = ("objective", "grad_logp", "clip_code", "is_weight", "is_clipped")
    terms = (
        TokenTerms(*(torch.cat([getattr(t, f) for t in parts]) for f in fields)) if parts else inputs.terms(logp_all)
    )
    dw = grads["dw"]
    if need["dw"] and dw is None:  # no token carried a gradient
        dw = torch.zeros(weight.shape, **f32)
    return terms, logp_all, ent_all, (grads["dh"], dw, grads["db"])


def _chunk_grad(e, sumexp, g, h, tgt, weight, head: LogitHead, ws, row0, grads, need_dw):
    """Add the chunk's dH rows, dW and db, skipping rows with g == 0; ``e`` is overwritten.

    dz0 = g (onehot(y) - e/S) dz/dz0 is built in place in ``e`` after moving the active rows to
    the front (in order, so no row is overwritten before it is moved).
    """
    active = torch.nonzero(g).squeeze(1)
    k = active.numel()
    if k == 0:
        return
    deriv = None if ws.d is None else ws.d[: e.shape[0]]
    if k < g.numel():
        for dst, src in enumerate(active.tolist()):
            if dst != src:
                e[dst].copy_(e[src])
                if deriv is not None:
                    deriv[dst].copy_(deriv[src])
        sumexp, g, h, tgt = (x.index_select(0, active) for x in (sumexp, g, h, tgt))
    dz = e[:k]
    if deriv is None:  # scalar dz/dz0 folds into g: no extra pass over the tile
        g = g * head.z_scale
    dz.mul_((-g / sumexp).unsqueeze(1))  # -g p
    dz[torch.arange(k, device=dz.device), tgt] += g  # + g onehot
    if deriv is not None:
        dz.mul_(deriv[:k])
    if grads["db"] is not None:
        grads["db"] += dz.sum(0)
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
    dh, dw, db = saved
    unit = bool(torch.equal(grad_out, torch.ones_like(grad_out)))
    if dh is not None and not unit:
        dh = dh * grad_out.to(dh.dtype)
    if dw is not None:
        if not unit:
            dw = dw * grad_out
        dw = dw.to(meta["weight_dtype"])
    if db is not None:
        if not unit:
            db = db * grad_out
        db = db.to(meta["bias_dtype"])
    return dh, dw, db
