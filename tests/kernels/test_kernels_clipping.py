"""Reference clipping: dual clip on by default (c = 3) and the log-ratio clamp before exp."""

import math

import pytest
import torch
from kernel_cases import IMPLS, check_against_reference, make_case, run_ours, run_reference

from fastdapo_kernels.dapo_math import ClipConfig, RolloutCorrection, inverse_normalizer, token_terms
from fastdapo_kernels.reference import reference_logprobs


def _current_logp(case):
    with torch.no_grad():
        lp, _, _ = reference_logprobs(case.hidden, case.weight, case.targets, case.temperature, torch.float64)
    return lp


@pytest.mark.parametrize("impl", IMPLS)
def test_dual_clip_is_on_by_default(impl):
    """A = -1 and ratio 5: the dual clip caps the per-token cost at c = 3, not r = 5."""
    case = make_case(n=16, hdim=24, vocab=300, seed=21, mask_frac=0.0)
    case.adv = -torch.ones(16)
    case.old = (_current_logp(case) - math.log(5.0)).float()
    loss, stats, dh, _ = run_ours(case, impl)
    assert loss.item() == pytest.approx(3.0, rel=1e-5)
    assert stats["clip_frac_dual"].item() == 1.0 and dh.abs().max() == 0
    off, _, off_dh, _ = run_ours(case, impl, dual_clip=None)
    assert off.item() == pytest.approx(5.0, rel=1e-4) and off_dh.abs().max() > 0


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the unbounded run's NaN grads
@pytest.mark.parametrize("impl", IMPLS)
def test_log_ratio_bound_keeps_huge_ratios_finite(impl):
    """logp - old = +-100 overflows exp in float32; the clamp at 20 keeps loss and grads finite,
    and clamped tokens pass no gradient (as torch.clamp's)."""
    case = make_case(n=24, hdim=24, vocab=300, seed=22, mask_frac=0.0)
    logp = _current_logp(case)
    case.adv = torch.where(torch.arange(24) % 2 == 0, -1.0, 0.7)
    jump = torch.zeros(24, dtype=torch.float64)
    jump[:6] = 100.0  # A < 0 at even rows: unclipped branch, ratio e^100 without the clamp
    jump[6:9] = -100.0
    case.old = (logp - jump).float()
    (loss, _, dh, dw), _ = check_against_reference(case, impl, dual_clip=None)
    assert torch.isfinite(loss) and torch.isfinite(dh).all() and torch.isfinite(dw).all()
    assert loss.item() > 1e7  # e^20 per dual-clip-free token: the bound, not the raw ratio
    assert dh[:9].abs().max() == 0 and dh[9:].abs().max() > 0
    unbounded, *_ = run_ours(case, impl, dual_clip=None, log_ratio_bound=None)
    assert not torch.isfinite(unbounded)


def test_grad_coefficient_matches_autograd_with_bound_and_weights():
    """g_t from dapo_math equals d loss / d logp_t of the textbook formula, for every clip and
    rollout-correction setting."""
    n = 400
    gen = torch.Generator().manual_seed(3)
    logp = torch.randn(n, generator=gen, dtype=torch.float64) - 2
    old = logp + torch.empty(n, dtype=torch.float64).uniform_(-1.2, 1.2, generator=gen)
    old[::11] += 30.0  # beyond the bound of 20
    old[5::13] -= 30.0
    rollout = old + torch.empty(n, dtype=torch.float64).uniform_(-1.5, 1.5, generator=gen)
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    adv[::7] = 0
    mask = torch.rand(n, generator=gen) > 0.2
    for dual, bound, mode in [(None, None, "none"), (1.6, 20.0, "none"), (3.0, 20.0, "tis"), (3.0, 20.0, "mis")]:
        terms = token_terms(
            logp,
            old,
            adv,
            mask,
            ClipConfig(0.2, 0.28, dual, bound),
            inverse_normalizer(mask, 123.0),
            rollout,
            RolloutCorrection(mode, 2.0),
        )
        x = logp.clone().requires_grad_(True)
        lr = x - old if bound is None else torch.clamp(x - old, -bound, bound)
        r = torch.exp(lr)
        obj = torch.min(r * adv, r.clamp(0.8, 1.28) * adv)
        if dual is not None:
            obj = torch.where(adv < 0, torch.max(obj, dual * adv), obj)
        rho = torch.exp(old - rollout)
        w = {"none": torch.ones_like(rho), "tis": rho.clamp(max=2.0), "mis": ((rho >= 0.5) & (rho <= 2.0)).double()}[
            mode
        ]
        loss = -(w * obj * mask).sum() / 123.0
        loss.backward()
        torch.testing.assert_close(terms.grad_logp.double(), x.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(terms.objective.sum().double() / -123.0, loss.detach())
        torch.testing.assert_close(terms.is_weight.double(), w, atol=1e-5, rtol=1e-5)


def test_clip_config_validation():
    assert ClipConfig().dual_clip == 3.0 and ClipConfig().log_ratio_bound == 20.0
    with pytest.raises(ValueError):
        ClipConfig(log_ratio_bound=0.0)
    with pytest.raises(ValueError):
        ClipConfig(dual_clip=1.0)


def test_reference_defaults_match_the_public_ones():
    case = make_case(n=8, hdim=16, vocab=300, seed=23, adv="neg")
    case.old = (_current_logp(case) - math.log(4.0)).float()
    default, *_ = run_reference(case)
    explicit, *_ = run_reference(case, dual_clip=3.0, log_ratio_bound=20.0)
    assert default.item() == explicit.item()
    assert default.item() == pytest.approx(3.0 * case.adv[case.mask].abs().mean().item(), rel=1e-6)
