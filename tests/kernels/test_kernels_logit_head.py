"""LM-head transforms (bias, logit scale, soft-capping) against the float64 reference."""

import pytest
import torch
from kernel_cases import IMPLS, assert_grad_close, make_case, tolerances

from fastdapo_kernels import fused_linear_dapo_loss, linear_logprobs
from fastdapo_kernels.reference import reference_dapo_loss, reference_logprobs

# (bias, logit_scale, softcap, temperature); V = 600 is not a multiple of the tile or the split
HEADS = [(True, 1.0, None, 1.0), (False, 0.25, None, 0.7), (False, 1.0, 2.0, 1.0), (True, 1.7, 3.0, 0.6)]


def _bias(vocab, seed):
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 0.5


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_bias,scale,cap,temp", HEADS)
def test_loss_and_grads_match_reference(impl, with_bias, scale, cap, temp):
    case = make_case(n=40, hdim=32, vocab=600, seed=41, temperature=temp)
    bias = _bias(600, 41) if with_bias else None
    head = dict(logit_scale=scale, softcap=cap)
    with torch.no_grad():  # old log-probs at the transformed head, so the clip branches are exact
        lp0, _, _ = reference_logprobs(case.hidden, case.weight, case.targets, temp, torch.float64, bias, scale, cap)
    case.old = (
        lp0 + (case.old.double() - reference_logprobs(case.hidden, case.weight, case.targets, temp, torch.float64)[0])
    ).float()

    def grads(h, w, b, fn, **kw):
        h, w = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        b = None if b is None else b.clone().requires_grad_(True)
        loss, stats = fn(h, w, case.targets, case.old, case.adv, case.mask, temperature=temp, bias=b, **head, **kw)
        loss.backward()
        return loss, stats, h.grad, w.grad, None if b is None else b.grad

    loss, stats, dh, dw, db = grads(case.hidden, case.weight, bias, fused_linear_dapo_loss, impl=impl)
    ref = grads(
        case.hidden.double(),
        case.weight.double(),
        None if bias is None else bias.double(),
        reference_dapo_loss,
        compute_dtype=torch.float64,
    )
    atol, rel = tolerances(torch.float32, impl)
    assert loss.item() == pytest.approx(ref[0].item(), rel=rel, abs=1e-6)
    for key in ("logprobs", "entropy"):
        torch.testing.assert_close(stats[key].double(), ref[1][key], atol=atol, rtol=0)
    assert ref[1]["clip_frac_low"] > 0 or ref[1]["clip_frac_high"] > 0
    assert_grad_close(dh, ref[2], rel, "d hidden")
    assert_grad_close(dw, ref[3], rel, "d weight")
    if with_bias:
        assert_grad_close(db, ref[4], rel, "d bias")
        assert db.abs().max() > 0
    plain = fused_linear_dapo_loss(
        case.hidden, case.weight, case.targets, case.old, case.adv, case.mask, temperature=temp, impl=impl
    )[0]
    assert abs(plain.item() - loss.item()) > 1e-4  # the transform is really applied


@pytest.mark.parametrize("impl", IMPLS)
def test_bias_without_grad_and_logprobs(impl):
    case = make_case(n=12, hdim=32, vocab=600, seed=42)
    bias = _bias(600, 42)
    lp, ent = linear_logprobs(
        case.hidden, case.weight, case.targets, 0.8, impl=impl, bias=bias, logit_scale=1.3, softcap=4.0
    )
    ref_lp, ref_ent, _ = reference_logprobs(case.hidden, case.weight, case.targets, 0.8, torch.float64, bias, 1.3, 4.0)
    torch.testing.assert_close(lp.double(), ref_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=2e-5, rtol=0)
    h = case.hidden.clone().requires_grad_(True)
    loss, stats = fused_linear_dapo_loss(
        h,
        case.weight,
        case.targets,
        lp,
        case.adv,
        case.mask,
        impl=impl,
        temperature=0.8,
        bias=bias,
        logit_scale=1.3,
        softcap=4.0,
    )
    loss.backward()
    assert h.grad.abs().max() > 0 and bias.grad is None
    torch.testing.assert_close(stats["logprobs"], lp, atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_logit_scale_folds_into_temperature_exactly(impl):
    case = make_case(n=10, hdim=16, vocab=300, seed=43)
    scaled = linear_logprobs(case.hidden, case.weight, case.targets, 1.0, impl=impl, logit_scale=2.0)
    cooled = linear_logprobs(case.hidden, case.weight, case.targets, 0.5, impl=impl)
    assert torch.equal(scaled[0], cooled[0]) and torch.equal(scaled[1], cooled[1])


def test_head_validation():
    case = make_case(n=4, hdim=16, vocab=300, seed=44)
    args = (case.hidden, case.weight, case.targets)
    with pytest.raises(ValueError, match="bias"):
        linear_logprobs(*args, impl="torch", bias=torch.zeros(299))
    with pytest.raises(ValueError, match="softcap"):
        linear_logprobs(*args, impl="torch", softcap=0.0)
    with pytest.raises(ValueError, match="logit_scale"):
        linear_logprobs(*args, impl="torch", logit_scale=0.0)
