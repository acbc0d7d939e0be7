"""Rollout correction inside the loss: token-level TIS and MIS against the float64 reference."""

from dataclasses import replace

import pytest
import torch
from kernel_cases import IMPLS, assert_grad_close, check_against_reference, make_case, run_ours

from fastdapo_kernels import fused_linear_dapo_loss, linear_logprobs
from fastdapo_kernels.reference import reference_logprobs

pytestmark = pytest.mark.parametrize("impl", IMPLS)

# log rho = old - rollout: rho = 0.30, 0.82, 1.49, 3.0, clearly inside or outside [1/2, 2]
LOG_RHO = torch.tensor([-1.2, -0.2, 0.4, 1.1])


def _case(seed, n=32):
    case = make_case(n=n, hdim=24, vocab=600, seed=seed)
    pick = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    rollout = case.old - LOG_RHO[pick]
    return case, rollout


@pytest.mark.parametrize("mode", ["none", "tis", "mis"])
def test_modes_match_reference(impl, mode):
    case, rollout = _case(31)
    kw = dict(rollout_logprobs=rollout, rollout_correction=mode, rollout_correction_cap=2.0)
    (loss, stats, _, _), (_, ref_stats, _, _) = check_against_reference(case, impl, **kw)
    if mode == "none":
        assert stats["is_weight"].eq(1).all() and stats["is_clip_frac"].item() == 0
    else:
        assert 0 < ref_stats["is_clip_frac"].item() < 1  # the cap is really exercised
    if mode == "mis":
        assert set(stats["is_weight"].unique().tolist()) == {0.0, 1.0}
    plain, *_ = run_ours(case, impl)
    assert (abs(plain.item() - loss.item()) > 1e-4) == (mode != "none")


@pytest.mark.parametrize("mode", ["tis", "mis"])
def test_gradient_is_the_importance_weighted_gradient(impl, mode):
    """Build sum_t w_t d obj_t / d theta by hand from float64 log-probs and compare."""
    case, rollout = _case(32)
    loss, stats, dh, dw = run_ours(case, impl, rollout_logprobs=rollout, rollout_correction=mode)
    h = case.hidden.double().requires_grad_(True)
    w = case.weight.double().requires_grad_(True)
    logp, _, _ = reference_logprobs(h, w, case.targets, 1.0, torch.float64)
    old, adv = case.old.double(), case.adv.double()
    r = torch.exp(logp - old)
    obj = torch.min(r * adv, r.clamp(0.8, 1.28) * adv)
    obj = torch.where(adv < 0, torch.max(obj, 3.0 * adv), obj)
    rho = torch.exp(old - rollout.double())
    weight = rho.clamp(max=2.0) if mode == "tis" else ((rho >= 0.5) & (rho <= 2.0)).double()
    by_hand = -(weight * obj * case.mask).sum() / case.mask.sum()
    by_hand.backward()
    assert loss.item() == pytest.approx(by_hand.item(), rel=2e-4)
    assert_grad_close(dh, h.grad, 2e-4, "d hidden")
    assert_grad_close(dw, w.grad, 2e-4, "d weight")
    torch.testing.assert_close(stats["is_weight"].double(), weight, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["tis", "mis"])
def test_unit_weights_are_bitwise_the_uncorrected_loss(impl, mode):
    case, _ = _case(33)
    plain = run_ours(case, impl, rollout_correction="none")
    same = run_ours(case, impl, rollout_logprobs=case.old.clone(), rollout_correction=mode)
    assert same[1]["is_weight"].eq(1).all()
    assert torch.equal(plain[0], same[0])
    assert torch.equal(plain[2], same[2]) and torch.equal(plain[3], same[3])


def test_on_policy_path_uses_the_detached_current_logprobs(impl):
    case, rollout = _case(34)
    cur, _ = linear_logprobs(case.hidden, case.weight, case.targets, impl=impl)
    results = []
    for old in (None, cur):
        h = case.hidden.clone().requires_grad_(True)
        w = case.weight.clone().requires_grad_(True)
        loss, stats = fused_linear_dapo_loss(
            h, w, case.targets, old, case.adv, case.mask, impl=impl, rollout_logprobs=rollout, rollout_correction="tis"
        )
        loss.backward()
        results.append((loss.detach(), stats["is_weight"], h.grad, w.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert (results[0][1] != 1).any()  # the weights do come from the current log-probs
    check_against_reference(replace(case, old=None), impl, rollout_logprobs=rollout, rollout_correction="tis")


def test_mis_keeps_the_callers_normalizer(impl):
    """Rejected tokens count in the normalizer (documented semantics): loss = sum kept / norm."""
    case, rollout = _case(35)
    kw = dict(rollout_logprobs=rollout, rollout_correction="mis")
    loss, stats, _, _ = run_ours(case, impl, **kw)
    kept = stats["is_weight"].bool() & case.mask
    assert 0 < kept.sum() < case.mask.sum()
    before, *_ = run_ours(case, impl, normalizer=int(case.mask.sum()), **kw)
    after, *_ = run_ours(case, impl, normalizer=int(kept.sum()), **kw)
    assert loss.item() == pytest.approx(before.item(), rel=1e-6)
    assert abs(loss.item() - after.item()) > 1e-4


def test_validation(impl):
    case, rollout = _case(36, n=4)
    args = (case.hidden, case.weight, case.targets, case.old, case.adv, case.mask)
    with pytest.raises(ValueError, match="needs rollout_logprobs"):
        fused_linear_dapo_loss(*args, impl=impl, rollout_correction="tis")
    with pytest.raises(ValueError, match="cap"):
        fused_linear_dapo_loss(
            *args, impl=impl, rollout_logprobs=rollout, rollout_correction="mis", rollout_correction_cap=1.0
        )
    with pytest.raises(ValueError, match="rollout_correction"):
        fused_linear_dapo_loss(*args, impl=impl, rollout_logprobs=rollout, rollout_correction="seq")
