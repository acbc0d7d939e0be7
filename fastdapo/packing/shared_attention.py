"""Attention for shared-prompt bundles ``[P | R1 | R2 ...]`` without a ``T x T`` mask.

The prompt is causal on itself; every response sees the whole prompt and itself causally. Two ways
to run it, picked per micro-batch by the attention work they would spend:

* batched: all prompts of the row right-padded into one causal SDPA call, all responses right-padded
  into a second call whose keys are ``[own prompt (padded) | own response (padded)]`` under a
  boolean mask; two calls per layer, cheap when lengths are alike (short responses, CPU);
* looped: one causal call per prompt and one per response over ``[prompt | response]`` (the prompt
  rows' outputs dropped); no mask tensor, for skewed long responses where padding to the longest
  would waste most of the attention FLOPs.

The gather plan depends only on the layout, so it is built once per forward and reused by every
layer (the layout object travels through transformers as the ``shared_prompt_bundles`` keyword).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SharedPromptLayout", "shared_prompt_attention"]

# batched when its padded attention work is at most this multiple of the exact work
PADDED_WORK_LIMIT = 2.0


class SharedPromptLayout:
    def __init__(self, bundles: list[tuple[int, int, list[int]]]):
        self.bundles = bundles  # (row start, prompt len, response lens); covers the row in order
        self.length = sum(p + sum(rs) for _, p, rs in bundles)
        self._plans: dict[torch.device, dict] = {}

    def max_span(self) -> int:
        """Longest attention span of any query: a prompt plus its longest response."""
        return max(p + max(rs, default=0) for _, p, rs in self.bundles)

    def use_batched(self) -> bool:
        prompts = [p for _, p, _ in self.bundles]
        resp = [(p, r) for _, p, rs in self.bundles for r in rs if r]
        exact = sum(p * p for p in prompts) + sum(r * (p + r) for p, r in resp)
        pmax = max(prompts)
        rmax = max((r for _, r in resp), default=0)
        padded = len(prompts) * pmax * pmax + len(resp) * rmax * (pmax + rmax)
        return padded <= PADDED_WORK_LIMIT * max(exact, 1)

    def plan(self, device: torch.device) -> dict:
        if device not in self._plans:
            self._plans[device] = {k: v.to(device) for k, v in self._build().items()}
        return self._plans[device]

    def _build(self) -> dict:
        starts = torch.tensor([s for s, _, _ in self.bundles])
        plens = torch.tensor([p for _, p, _ in self.bundles])
        pmax = int(plens.max())
        ar_p = torch.arange(pmax)
        # padded slots point at a real row of their own block; their results are never read back
        prompt_idx = starts[:, None] + torch.minimum(ar_p[None, :], plens[:, None] - 1)
        resp = []  # (bundle start, prompt len, response start, response len)
        for s, p, rs in self.bundles:
            off = s + p
            for r in rs:
                if r:
                    resp.append((s, p, off, r))
                off += r
        plan = {"prompt_idx": prompt_idx, "pmax": torch.tensor(pmax)}
        nb = len(self.bundles)
        inv = torch.empty(self.length, dtype=torch.long)
        for b, (s, p, _) in enumerate(self.bundles):
            inv[s : s + p] = b * pmax + torch.arange(p)
        if resp:
            rs_t = torch.tensor(resp)
            bs, ps, ro, rl = rs_t.unbind(1)
            rmax = int(rl.max())
            ar_r = torch.arange(rmax)
            q_idx = ro[:, None] + torch.minimum(ar_r[None, :], rl[:, None] - 1)
            kv_prompt = bs[:, None] + torch.minimum(ar_p[None, :], ps[:, None] - 1)
            plan["q_idx"] = q_idx
            plan["kv_idx"] = torch.cat([kv_prompt, q_idx], 1)
            j = torch.arange(pmax + rmax)[None, None, :]
            i = ar_r[None, :, None]
            in_prompt = j < ps[:, None, None]
            in_own = (j >= pmax) & (j - pmax <= i) & (j - pmax < rl[:, None, None])
            plan["mask"] = (in_prompt | in_own)[:, None]  # [R, 1, rmax, pmax + rmax]
            for k, (_, _, o, r) in enumerate(resp):
                inv[o : o + r] = nb * pmax + k * rmax + torch.arange(r)
        plan["inv"] = inv
        return plan


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``[1, H, T, D]`` rows ``idx [B, L]`` -> ``[B, H, L, D]``."""
    h, d = x.shape[1], x.shape[3]
    return x[0].index_select(1, idx.reshape(-1)).view(h, *idx.shape, d).transpose(0, 1)


def _batched(query, key, value, layout, dropout, scaling):
    plan = layout.plan(query.device)
    outs = [
        F.scaled_dot_product_attention(
            _take(query, plan["prompt_idx"]),
            _take(key, plan["prompt_idx"]),
            _take(value, plan["prompt_idx"]),
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
    ]
    if "q_idx" in plan:
        outs.append(
            F.scaled_dot_product_attention(
                _take(query, plan["q_idx"]),
                _take(key, plan["kv_idx"]),
                _take(value, plan["kv_idx"]),
                attn_mask=plan["mask"],
                dropout_p=dropout,
                scale=scaling,
            )
        )
    h, d = query.shape[1], query.shape[3]
    flat = torch.cat([o.transpose(0, 1).reshape(h, -1, d) for o in outs], 1)  # [H, slots, D]
    return flat.index_select(1, plan["inv"])[None]


def _looped(query, key, value, layout, dropout, scaling):
    sizes = [n for _, p, rs in layout.bundles for n in (p, *rs) if n]
    qs, ks, vs = query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2)
    outs, j = [], 0
    for _, p, rs in layout.bundles:
        qp, kp, vp = qs[j], ks[j], vs[j]
        outs.append(F.scaled_dot_product_attention(qp, kp, vp, dropout_p=dropout, is_causal=True, scale=scaling))
        j += 1
        for r in rs:
            if not r:
                continue
            # Causal attention over [prompt | response], keeping the response rows: no mask tensor (so the
            # flash / memory-efficient kernels apply) for p x p wasted scores, small next to r x (p + r).
            out = F.scaled_dot_product_attention(
                torch.cat([qp, qs[j]], 2),
                torch.cat([kp, ks[j]], 2),
                torch.cat([vp, vs[j]], 2),
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
            )
            outs.append(out[:, :, p:])
            j += 1
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def shared_prompt_attention(
    query,
    key,
    value,
    layout,
    dropout: float = 0.0,
    scaling: float | None = None,
    batched: bool | None = None,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """``[1, heads, T, D]`` packed row -> ``[1, heads, T, D]``; ``layout``: a :class:`SharedPromptLayout`
    or its bundle list. ``batched=None`` picks the cheaper way."""
    if not isinstance(layout, SharedPromptLayout):
        layout = SharedPromptLayout(layout)
    if sliding_window is not None and layout.max_span() > sliding_window:
        raise NotImplementedError("shared-prompt attention does not implement sliding-window attention")
    if layout.length != query.shape[2]:
        raise ValueError(f"shared_prompt_bundles cover {layout.length} tokens but the row holds {query.shape[2]}")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    use_batched = layout.use_batched() if batched is None else batched
    return (_batched if use_batched else _looped)(query, key, value, layout, dropout, scaling)
