"""linear_logprobs, back-end selection, the shared DAPO math and the memory bound."""

import pytest
import torch
from kernel_cases import IMPLS, make_case
from torch.utils._python_dispatch import TorchDispatchMode

from fastdapo_kernels import dispatch, linear_logprobs
from fastdapo_kernels import torch_chunked as tc
from fastdapo_kernels.dapo_math import ClipConfig, inverse_normalizer, token_terms
from fastdapo_kernels.reference import reference_logprobs


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("vocab,temperature", [(1000, 1.0), (5003, 1.7)])
def test_linear_logprobs(impl, vocab, temperature):
    case = make_case(n=19, vocab=vocab, seed=vocab)
    lp, ent = linear_logprobs(case.hidden, case.weight, case.targets, temperature, impl=impl)
    ref_lp, ref_ent, _ = reference_logprobs(case.hidden, case.weight, case.targets, temperature, torch.float64)
    assert lp.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(lp.double(), ref_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=2e-5, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_logprobs_bf16(impl):
    case = make_case(n=9, vocab=1000, dtype=torch.bfloat16, seed=3)
    lp, ent = linear_logprobs(case.hidden, case.weight, case.targets, impl=impl)
    ref_lp, ref_ent, _ = reference_logprobs(case.hidden, case.weight, case.targets, 1.0, torch.float64)
    tol = 0.15 if impl == "torch" else 0.03
    torch.testing.assert_close(lp.double(), ref_lp, atol=tol, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=tol, rtol=0)


@pytest.mark.triton
def test_triton_split_not_a_tile_multiple(monkeypatch):
    """Vocabulary splits that end inside a tile: each target logit is written exactly once."""
    from fastdapo_kernels import triton_backend as tb

    monkeypatch.setattr(tb, "INTERPRET_SPLIT_V", 200)
    case = make_case(n=21, vocab=1000, seed=5)
    case.targets[:10] = torch.arange(195, 205)  # around the first split boundary
    lp, ent = linear_logprobs(case.hidden, case.weight, case.targets, impl="triton")
    ref_lp, ref_ent, _ = reference_logprobs(case.hidden, case.weight, case.targets, 1.0, torch.float64)
    torch.testing.assert_close(lp.double(), ref_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=2e-5, rtol=0)


def test_dispatch_by_name():
    assert dispatch.resolve("auto", torch.device("cpu")) is tc
    assert dispatch.resolve("torch", torch.device("cpu")) is tc
    assert set(dispatch.BACKENDS) == {"torch", "triton"}
    with pytest.raises(ValueError):
        dispatch.resolve("cuda-magic", torch.device("cpu"))


def test_triton_runs_in_interpreter_here():
    """The default pytest run must exercise the Triton kernels (interpreted on CPU)."""
    pytest.importorskip("triton")
    from fastdapo_kernels import triton_fwd as tf

    case = make_case(n=4, vocab=300, seed=0)
    linear_logprobs(case.hidden, case.weight, case.targets, impl="triton")
    assert True in tf.partials._built  # built in interpreter mode


def test_grad_coefficient_is_derivative_of_loss():
    """g_t from dapo_math equals d loss / d logp_t from autograd on the textbook formula."""
    n = 400
    logp = torch.randn(n, dtype=torch.float64) - 2
    old = logp + torch.empty(n, dtype=torch.float64).uniform_(-0.8, 0.8)
    adv = torch.randn(n, dtype=torch.float64)
    adv[::7] = 0
    mask = torch.rand(n) > 0.2
    for dual in (None, 1.6):
        clip = ClipConfig(0.2, 0.28, dual)
        inv = inverse_normalizer(mask, 123.0)
        terms = token_terms(logp, old, adv, mask, clip, inv)
        x = logp.clone().requires_grad_(True)
        r = torch.exp(x - old)
        obj = torch.min(r * adv, r.clamp(0.8, 1.28) * adv)
        if dual is not None:
            obj = torch.where(adv < 0, torch.max(obj, dual * adv), obj)
        loss = -(obj * mask).sum() / 123.0
        loss.backward()
        torch.testing.assert_close(terms.grad_logp.double(), x.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(-terms.objective.sum().double() * inv.double(), loss.detach(), atol=1e-6, rtol=1e-5)


def test_normalizer_validation():
    mask = torch.tensor([True, False, True])
    assert inverse_normalizer(mask, None).item() == 0.5
    assert inverse_normalizer(torch.zeros(3, dtype=torch.bool), None).item() == 1.0
    assert inverse_normalizer(mask, torch.tensor(4.0)).item() == 0.25
    with pytest.raises(ValueError):
        inverse_normalizer(mask, 0)
    with pytest.raises(ValueError):
        ClipConfig(0.2, 0.28, dual_clip=0.9)


def test_chunk_rows_logic():
    assert tc.chunk_rows(1024, 151936, 1 << 24) == 96
    assert tc.chunk_rows(1024, 151936, 1 << 25) == 208
    assert tc.chunk_rows(5, 151936, 1 << 24) == 5
    assert tc.chunk_rows(1000, 10**9, 1 << 24) == 1


class _MaxAlloc(TorchDispatchMode):
    """Records the largest tensor produced by any aten op."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_torch_backend_never_allocates_rows_times_vocab(monkeypatch):
    from fastdapo_kernels import fused_linear_dapo_loss

    n, hdim, vocab = 96, 16, 1000
    monkeypatch.setattr(tc, "CHUNK_ELEMENTS", 16 * vocab)
    case = make_case(n=n, hdim=hdim, vocab=vocab, seed=1)
    h = case.hidden.clone().requires_grad_(True)
    w = case.weight.clone().requires_grad_(True)
    with _MaxAlloc() as probe:
        loss, _ = fused_linear_dapo_loss(h, w, case.targets, case.old, case.adv, case.mask, impl="torch")
        loss.backward()
    assert probe.largest <= max(16 * vocab, vocab * hdim, n * hdim)
    assert probe.largest < n * vocab
