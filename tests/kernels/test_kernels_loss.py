"""fused_linear_dapo_loss against the float64 full-logits reference, for every back-end."""

import pytest
import torch
from kernel_cases import IMPLS, check_against_reference, make_case, run_ours

from fastdapo_kernels import fused_linear_dapo_loss, linear_logprobs

pytestmark = pytest.mark.parametrize("impl", IMPLS)


@pytest.mark.parametrize("vocab", [1000, 5003])
def test_matches_reference_ragged_vocab(impl, vocab):
    case = make_case(n=24, vocab=vocab, seed=vocab)
    _, (_, ref_stats, _, _) = check_against_reference(case, impl)
    # the case must exercise both clip sides, or the comparison proves little
    assert ref_stats["clip_frac_low"] > 0 and ref_stats["clip_frac_high"] > 0


def test_single_row(impl):
    case = make_case(n=1, vocab=1000, seed=1, adv="pos")
    check_against_reference(case, impl)


@pytest.mark.parametrize("adv", ["pos", "neg", "zero"])
def test_advantage_sign(impl, adv):
    case = make_case(n=20, vocab=1000, seed=2, adv=adv)
    (loss, stats, dh, dw), _ = check_against_reference(case, impl)
    if adv == "zero":
        assert loss.item() == 0.0 and dh.abs().max() == 0 and dw.abs().max() == 0
        assert stats["grad_token_frac"].item() == 0.0
    if adv == "pos":
        assert stats["clip_frac_low"].item() == 0.0
    if adv == "neg":
        assert stats["clip_frac_high"].item() == 0.0


def test_masked_rows_and_several_row_blocks(impl):
    # 70 rows with half masked: the compacted active rows span several row blocks
    case = make_case(n=70, hdim=40, vocab=1000, seed=3, mask_frac=0.5)
    (_, _, dh, _), _ = check_against_reference(case, impl)
    assert dh[~case.mask].abs().max() == 0


def test_temperature(impl):
    case = make_case(n=16, vocab=1000, seed=4, temperature=0.6)
    (loss, *_), _ = check_against_reference(case, impl)
    plain, _ = fused_linear_dapo_loss(case.hidden, case.weight, case.targets, case.old, case.adv, case.mask, impl=impl)
    assert abs(plain.item() - loss.item()) > 1e-3


@pytest.mark.parametrize("as_tensor", [False, True])
def test_explicit_normalizer(impl, as_tensor):
    case = make_case(n=16, vocab=1000, seed=5)
    norm = torch.tensor(37.5) if as_tensor else 37.5
    (loss, *_), _ = check_against_reference(case, impl, normalizer=norm)
    default, _ = fused_linear_dapo_loss(
        case.hidden, case.weight, case.targets, case.old, case.adv, case.mask, impl=impl
    )
    torch.testing.assert_close(loss * 37.5, default * case.mask.sum().float())


def test_dual_clip(impl):
    case = make_case(n=32, vocab=1000, seed=6, adv="neg")
    (loss, stats, dh, _), _ = check_against_reference(case, impl, dual_clip=1.5)
    assert stats["clip_frac_dual"].item() > 0
    plain_loss, _, plain_dh, _ = run_ours(case, impl)
    assert abs(plain_loss.item() - loss.item()) > 1e-4
    assert (plain_dh - dh).abs().max() > 1e-4


def test_bfloat16_inputs(impl):
    case = make_case(n=24, vocab=1000, dtype=torch.bfloat16, seed=7)
    (loss, stats, dh, dw), _ = check_against_reference(case, impl, check_fracs=impl == "triton")
    assert dh.dtype == torch.bfloat16 and dw.dtype == torch.bfloat16


def test_weight_without_grad(impl):
    case = make_case(n=20, vocab=1000, seed=8)
    check_against_reference(case, impl, weight_grad=False)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_masked_rows_skip_gradient_work(impl):
    """Masked rows hold NaN hidden states: any backward work on them would poison dW/dH."""
    case = make_case(n=40, hdim=40, vocab=1000, seed=9, mask_frac=0.5)
    sub = make_case(n=40, hdim=40, vocab=1000, seed=9, mask_frac=0.5)
    case.hidden[~case.mask] = float("nan")
    keep = case.mask
    for name in ("hidden", "targets", "old", "adv", "mask"):
        setattr(sub, name, getattr(sub, name)[keep])
    loss, _, dh, dw = run_ours(case, impl)
    ref_loss, _, ref_dh, ref_dw = run_ours(sub, impl)
    assert torch.isfinite(loss) and torch.isfinite(dw).all() and torch.isfinite(dh).all()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(dh[keep], ref_dh, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dw, ref_dw, atol=1e-6, rtol=1e-5)
    assert dh[~keep].abs().max() == 0


def test_leading_dims_and_padding_ids(impl):
    case = make_case(n=24, vocab=1000, seed=10)
    flat_loss, flat_stats, flat_dh, _ = run_ours(case, impl)
    h = case.hidden.reshape(4, 6, -1).clone().requires_grad_(True)
    targets = case.targets.clone()
    targets[~case.mask] = -100  # padding ids are fine on masked rows
    loss, stats = fused_linear_dapo_loss(
        h,
        case.weight,
        targets.reshape(4, 6),
        case.old.reshape(4, 6),
        case.adv.reshape(4, 6),
        case.mask.reshape(4, 6),
        impl=impl,
    )
    loss.backward()
    assert stats["logprobs"].shape == (4, 6)
    torch.testing.assert_close(loss, flat_loss)
    torch.testing.assert_close(h.grad.reshape(24, -1), flat_dh)
    torch.testing.assert_close(stats["logprobs"].reshape(-1)[case.mask], flat_stats["logprobs"][case.mask])


def test_no_grad_forward(impl):
    case = make_case(n=12, vocab=1000, seed=11)
    with torch.no_grad():
        loss, stats = fused_linear_dapo_loss(
            case.hidden, case.weight, case.targets, case.old, case.adv, case.mask, impl=impl
        )
    ref_loss, *_ = run_ours(case, impl)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref_loss.detach())


def test_on_policy_none_equals_passing_current_logprobs(impl):
    """old_logprobs=None must equal passing the current log-probs (ratio 1, no clipping)."""
    torch.manual_seed(5)
    n, hdim, vocab = 37, 16, 1000
    h = torch.randn(n, hdim, dtype=torch.float64)
    w = torch.randn(vocab, hdim, dtype=torch.float64) * 0.3
    t = torch.randint(0, vocab, (n,))
    adv, mask = torch.randn(n), torch.rand(n) > 0.2
    cur, _ = linear_logprobs(h.float(), w.float(), t, impl=impl)
    grads = []
    for old in (None, cur):
        hh, ww = h.float().clone().requires_grad_(), w.float().clone().requires_grad_()
        loss, st = fused_linear_dapo_loss(hh, ww, t, old, adv, mask, impl=impl)
        loss.backward()
        grads.append((float(loss), hh.grad, ww.grad, float(st["clip_frac_low"] + st["clip_frac_high"])))
    (l0, dh0, dw0, c0), (l1, dh1, dw1, c1) = grads
    assert l0 == pytest.approx(l1, rel=1e-5, abs=1e-7) and c0 == c1 == 0.0
    assert torch.allclose(dh0, dh1, atol=1e-6) and torch.allclose(dw0, dw1, atol=1e-6)
    assert dh0.abs().sum() > 0


def test_per_token_normalizer_is_seq_mean_token_mean(impl):
    """Per-token divisors L_s * num_sequences give verl's seq-mean-token-mean: the mean over sequences of each
    sequence's mean token loss; the kernels match the float64 reference with them (loss and gradients)."""
    case = make_case(n=40, vocab=1000, seed=9, mask_frac=0.2)
    seq = torch.tensor([0] * 5 + [1] * 17 + [2] * 3 + [3] * 15)  # four packed sequences of unequal length
    tokens = torch.zeros(4).index_add_(0, seq, case.mask.float())
    (loss, *_), _ = check_against_reference(case, impl, normalizer=tokens[seq] * 4)
    # the same number from the definition: each sequence's token-mean loss, averaged over the sequences
    per_seq = [
        fused_linear_dapo_loss(
            case.hidden[seq == s],
            case.weight,
            case.targets[seq == s],
            case.old[seq == s],
            case.adv[seq == s],
            case.mask[seq == s],
            impl="torch",
        )[0]
        for s in range(4)
    ]
    torch.testing.assert_close(loss, torch.stack(per_seq).mean(), rtol=1e-5, atol=1e-6)
    token_mean, _ = fused_linear_dapo_loss(case.hidden, case.weight, case.targets, case.old, case.adv, case.mask)
    assert abs(loss.item() - token_mean.item()) > 1e-3  # the short sequences weigh more
