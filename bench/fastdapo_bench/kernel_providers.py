"""Loss providers compared by the kernel benchmark; each builds a zero-argument loss closure."""

from __future__ import annotations

import torch

from fastdapo_kernels import fused_linear_dapo_loss
from fastdapo_kernels.reference import reference_dapo_loss

from .kernel_shapes import Batch

EPS_LOW, EPS_HIGH = 0.2, 0.28


class Unavailable(RuntimeError):
    """The provider cannot run here; the message says why."""


def _naive_loss(h, w, targets, old, adv, mask):
    return reference_dapo_loss(h, w, targets, old, adv, mask, EPS_LOW, EPS_HIGH)[0]


def naive(batch: Batch):
    b = batch
    return lambda: _naive_loss(b.hidden, b.weight, b.targets, b.old_logprobs, b.advantages, b.mask)


def compiled(batch: Batch):
    try:
        fn = torch.compile(_naive_loss, dynamic=False)
        b = batch
        args = (b.hidden, b.weight, b.targets, b.old_logprobs, b.advantages, b.mask)
        fn(*args).backward()  # compile outside the timed region
        b.zero_grad()
    except Exception as exc:  # any compiler/tool-chain failure: report, do not crash the sweep
        raise Unavailable(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:160]}") from exc
    return lambda: fn(*args)


def liger(batch: Batch):
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss
    except ImportError as exc:
        raise Unavailable(f"liger-kernel not importable: {exc}") from exc
    b = batch
    n, hdim, _ = b.shape
    seq = b.seq_len
    if n % seq:
        raise Unavailable(f"N={n} is not a multiple of the sequence length {seq}")
    loss_mod = LigerFusedLinearGRPOLoss(
        beta=0.0,
        compiled=b.hidden.is_cuda,
        use_ref_model=False,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        loss_type="dapo",
    )
    x = b.hidden.view(n // seq, seq, hdim)
    ids = b.targets.view(n // seq, seq)
    attn = b.mask.view(n // seq, seq).to(b.hidden.dtype)
    adv = b.advantages.view(n // seq, seq)[:, 0].contiguous()
    old = b.old_logprobs.view(n // seq, seq)
    return lambda: loss_mod(x, b.weight, ids, attn, adv, old_per_token_logps=old)[0]


def _ours(impl):
    def make(batch: Batch):
        b = batch
        if impl == "triton" and not b.hidden.is_cuda:
            raise Unavailable("the triton provider needs a CUDA device")
        return lambda: fused_linear_dapo_loss(
            b.hidden, b.weight, b.targets, b.old_logprobs, b.advantages, b.mask, EPS_LOW, EPS_HIGH, impl=impl
        )[0]

    return make


# Providers that compute the gradient inside the forward pass (their "bwd" only hands it over).
GRAD_IN_FORWARD = {"liger", "torch"}

PROVIDERS = {
    "naive": naive,
    "compile": compiled,
    "liger": liger,
    "torch": _ours("torch"),
    "triton": _ours("triton"),
}
