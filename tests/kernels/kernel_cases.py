"""Shared builders and checks for the kernel tests (float64 naive reference as the oracle)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import torch

from fastdapo_kernels import fused_linear_dapo_loss
from fastdapo_kernels.reference import reference_dapo_loss, reference_logprobs

# log(old/new) offsets: exp(-offset) lands clearly inside or outside [0.8, 1.28] (and c = 1.5),
# so float32 / bfloat16 rounding never flips which branch of the clip is active.
LOG_RATIO_OFFSETS = (-0.6, -0.35, -0.1, 0.1, 0.6)
IMPLS = ("torch", "triton")


def triton_usable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("TRITON_INTERPRET") == "1"


@dataclass
class Case:
    hidden: torch.Tensor
    weight: torch.Tensor
    targets: torch.Tensor
    old: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor
    temperature: float = 1.0


def make_case(
    n=24, hdim=48, vocab=1000, dtype=torch.float32, seed=0, mask_frac=0.25, adv="mixed", temperature=1.0
) -> Case:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, hdim, generator=gen).to(dtype)
    weight = (torch.randn(vocab, hdim, generator=gen) * (2.0 / math.sqrt(hdim))).to(dtype)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    with torch.no_grad():
        logp, _, _ = reference_logprobs(hidden, weight, targets, temperature, torch.float64)
    offsets = torch.tensor(LOG_RATIO_OFFSETS, dtype=torch.float64)
    old = (logp + offsets[torch.randint(0, len(offsets), (n,), generator=gen)]).float()
    a = torch.randn(n, generator=gen)
    if adv == "pos":
        a = a.abs() + 0.1
    elif adv == "neg":
        a = -a.abs() - 0.1
    elif adv == "zero":
        a = torch.zeros(n)
    else:
        a = torch.where(torch.rand(n, generator=gen) < 0.15, 0.0, a)
    mask = torch.rand(n, generator=gen) >= mask_frac
    mask[0] = True
    return Case(hidden, weight, targets, old, a, mask, temperature)


def tolerances(dtype, impl):
    """(atol for logp/entropy, relative tolerance for loss and gradients)."""
    if dtype == torch.bfloat16:
        # the torch back-end rounds the logits to bf16 (matmul output); triton accumulates in fp32
        return (0.15, 0.08) if impl == "torch" else (0.03, 0.03)
    return 2e-4, 2e-4


def run_ours(case: Case, impl: str, weight_grad=True, **kw):
    h = case.hidden.clone().requires_grad_(True)
    w = case.weight.clone().requires_grad_(weight_grad)
    loss, stats = fused_linear_dapo_loss(
        h, w, case.targets, case.old, case.adv, case.mask, temperature=case.temperature, impl=impl, **kw
    )
    loss.backward()
    return loss, stats, h.grad, w.grad


def run_reference(case: Case, **kw):
    h = case.hidden.double().requires_grad_(True)
    w = case.weight.double().requires_grad_(True)
    loss, stats = reference_dapo_loss(
        h,
        w,
        case.targets,
        case.old,
        case.adv,
        case.mask,
        temperature=case.temperature,
        compute_dtype=torch.float64,
        **kw,
    )
    loss.backward()
    return loss, stats, h.grad, w.grad


def assert_grad_close(ours, ref, rel, name):
    assert ours is not None, f"{name}: no gradient"
    scale = ref.abs().max().item() + 1e-12
    err = (ours.double() - ref).abs().max().item()
    assert err <= rel * scale + 1e-9, f"{name}: max err {err:.3g} vs scale {scale:.3g}"


def check_against_reference(case: Case, impl: str, weight_grad=True, check_fracs=True, **kw):
    """Compare loss, stats and gradients of ``impl`` with the float64 reference; return both."""
    loss, stats, dh, dw = run_ours(case, impl, weight_grad, **kw)
    ref_loss, ref_stats, ref_dh, ref_dw = run_reference(case, **kw)
    atol, rel = tolerances(case.hidden.dtype, impl)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert abs(loss.item() - ref_loss.item()) <= rel * max(abs(ref_loss.item()), 1e-3) + 1e-6
    for key in ("logprobs", "entropy"):
        assert stats[key].dtype == torch.float32 and not stats[key].requires_grad
        torch.testing.assert_close(stats[key].double(), ref_stats[key], atol=atol, rtol=0)
    if check_fracs:
        for key in ("clip_frac_low", "clip_frac_high", "clip_frac_dual", "is_clip_frac"):
            assert stats[key].dim() == 0
            assert abs(stats[key].item() - ref_stats[key].item()) < 1e-6, key
    assert stats["is_weight"].dtype == torch.float32 and not stats["is_weight"].requires_grad
    torch.testing.assert_close(stats["is_weight"].double(), ref_stats["is_weight"], atol=1e-5, rtol=1e-5)
    assert_grad_close(dh, ref_dh, rel, "d hidden")
    if weight_grad:
        assert_grad_close(dw, ref_dw, rel, "d weight")
    else:
        assert dw is None
    return (loss, stats, dh, dw), (ref_loss, ref_stats, ref_dh, ref_dw)


def with_dtype(case: Case, dtype) -> Case:
    return replace(case, hidden=case.hidden.to(dtype), weight=case.weight.to(dtype))
