import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.layouts import MicroBatch
from fastdapo.packing.packed import (
    block_causal_mask,
    make_micro_batches,
    make_padded_micro_batches,
    padding_fraction,
    plan_micro_batches,
    scatter_back,
)

transformers = pytest.importorskip("transformers")

VOCAB = 64
LENGTHS = [5, 17, 3, 30, 11, 8, 1, 2, 24]


def tiny_qwen2(attn_impl="sdpa", seed=0):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = attn_impl
    return transformers.Qwen2ForCausalLM(cfg).float().eval()


def make_seqs(lengths=LENGTHS, seed=1):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in lengths:
        ids = torch.randint(0, VOCAB, (n,), generator=g)
        mask = torch.rand(n, generator=g) < 0.7
        seqs.append(
            Sequence(
                input_ids=ids,
                loss_mask=mask,
                advantages=torch.randn(n, generator=g),
                old_logprobs=-torch.rand(n, generator=g),
            )
        )
    return seqs


def shifted_targets(ids):
    t = torch.zeros_like(ids)
    t[:-1] = ids[1:]
    return t


def token_logprobs(model, hidden, targets):
    logits = model.lm_head(hidden)
    return torch.log_softmax(logits.float(), -1).gather(-1, targets[:, None])[:, 0]


def mb_logprobs(model, mb: MicroBatch):
    hidden = model.model(**mb.backbone_kwargs()).last_hidden_state
    return token_logprobs(model, hidden.reshape(-1, hidden.shape[-1]), mb.targets)


def alone_logprobs(model, seq: Sequence):
    hidden = model.model(input_ids=seq.input_ids[None]).last_hidden_state[0]
    return token_logprobs(model, hidden, shifted_targets(seq.input_ids))


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


# ------------------------------------------------------------------ layout


def test_layout_targets_masks_fields():
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40)
    for mb in mbs:
        t = mb.input_ids.shape[1]
        assert mb.input_ids.shape == mb.position_ids.shape == (1, t)
        assert mb.attention_mask.shape == (1, 1, t, t) and mb.attention_mask.dtype == torch.bool
        assert mb.cu_seqlens.dtype == torch.int32 and mb.cu_seqlens[-1] == mb.num_tokens == t
        assert mb.targets.shape == mb.loss_mask.shape == (t,)
        for i, (lo, hi) in zip(mb.seq_index, zip(mb.cu_seqlens[:-1].tolist(), mb.cu_seqlens[1:].tolist())):
            s = seqs[i]
            assert torch.equal(mb.input_ids[0, lo:hi], s.input_ids)
            assert torch.equal(mb.position_ids[0, lo:hi], torch.arange(hi - lo))
            assert torch.equal(mb.targets[lo : hi - 1], s.input_ids[1:]) and mb.targets[hi - 1] == 0
            assert torch.equal(mb.loss_mask[lo : hi - 1], s.loss_mask[:-1]) and not mb.loss_mask[hi - 1]
            assert torch.equal(mb.advantages[lo:hi], s.advantages)
            assert torch.equal(mb.old_logprobs[lo:hi], s.old_logprobs)


def test_block_causal_mask():
    m = block_causal_mask(torch.tensor([0, 0, 1, 1, 1]))[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)


def test_unpack_scatter_back_roundtrip():
    seqs = make_seqs()
    for builder in (make_micro_batches, make_padded_micro_batches):
        mbs = builder(seqs, max_tokens=35)
        per_mb = [mb.advantages for mb in mbs]
        back = scatter_back(mbs, per_mb, len(seqs))
        for s, v in zip(seqs, back):
            assert torch.equal(s.advantages, v)
        for mb in mbs:
            parts = mb.unpack(mb.old_logprobs)
            assert [p.numel() for p in parts] == [len(seqs[i]) for i in mb.seq_index]
    with pytest.raises(ValueError):
        scatter_back(mbs[:1], per_mb[:1], len(seqs))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=30),
    st.integers(min_value=8, max_value=200),
    st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
)
def test_plan_budget_and_count(lengths, max_tokens, forced):
    plan = plan_micro_batches(lengths, max_tokens, forced)
    assert sorted(i for p in plan for i in p) == list(range(len(lengths)))
    for p in plan:
        assert len(p) <= 1 or sum(lengths[i] for i in p) <= max_tokens
    big = sum(1 for n in lengths if n > max_tokens)
    small_tokens = sum(n for n in lengths if n <= max_tokens)
    need = len(plan_micro_batches(lengths, max_tokens))
    assert need >= big + math.ceil(small_tokens / max_tokens)
    assert len(plan) == max(need, forced or 0)
    assert sum(1 for p in plan if p) == min(len(plan), len(lengths))  # no empty micro-batch while sequences remain
    if not big:
        assert need >= math.ceil(sum(lengths) / max_tokens)
    if forced is None and not big:  # balanced: spread bounded by the longest sequence
        sums = [sum(lengths[i] for i in p) for p in plan]
        assert max(sums) - min(sums) <= max(lengths)


def test_micro_batch_count_and_budget():
    seqs = make_seqs()
    total = sum(LENGTHS)
    mbs = make_micro_batches(seqs, max_tokens=40)
    assert len(mbs) >= math.ceil(total / 40)
    assert all(mb.num_tokens <= 40 for mb in mbs)
    assert sorted(i for mb in mbs for i in mb.seq_index) == list(range(len(seqs)))
    assert len(make_micro_batches(seqs, max_tokens=40, num_micro_batches=5)) == 5
    # a sequence longer than the budget gets its own micro-batch
    mbs = make_micro_batches(seqs, max_tokens=20)
    for mb in mbs:
        assert mb.num_tokens <= 20 or len(mb.seq_index) == 1
    assert any(mb.seq_index == [3] for mb in mbs)


def test_forced_count_above_sequences_gives_dummy_micro_batches(model):
    seqs = make_seqs([4, 6])
    mbs = make_micro_batches(seqs, max_tokens=64, num_micro_batches=4)
    assert len(mbs) == 4
    dummies = [mb for mb in mbs if not mb.seq_index]
    assert len(dummies) == 2
    for mb in dummies:
        assert mb.num_tokens == 0 and mb.input_ids.shape == (1, 1) and not mb.loss_mask.any()
        assert mb.advantages.shape == mb.old_logprobs.shape == (1,)
        with torch.no_grad():
            assert torch.isfinite(mb_logprobs(model, mb)).all()
    assert padding_fraction(mbs) == pytest.approx(2 / 12)


def test_empty_input():
    assert make_micro_batches([], max_tokens=16) == []
    assert len(make_micro_batches([], max_tokens=16, num_micro_batches=2)) == 2


def test_validation():
    s = Sequence(input_ids=torch.arange(4), loss_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        make_micro_batches([s], max_tokens=8)
    with pytest.raises(ValueError):
        make_micro_batches(make_seqs([3]), max_tokens=8, attn_impl="flex")


# ------------------------------------------------------------------ numerics through a tiny Qwen2


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_packed_matches_unpacked_logprobs(attn_impl):
    model = tiny_qwen2(attn_impl)
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, attn_impl=attn_impl)
    assert any(len(mb.seq_index) > 2 for mb in mbs)
    with torch.no_grad():
        packed = scatter_back(mbs, [mb_logprobs(model, mb) for mb in mbs], len(seqs))
        for s, lp in zip(seqs, packed):
            torch.testing.assert_close(lp, alone_logprobs(model, s), atol=1e-5, rtol=0)


def test_packed_matches_unpacked_gradients(model):
    seqs = make_seqs()
    params = [p for p in model.parameters() if p.requires_grad]

    model.zero_grad()
    ref_loss = sum(alone_logprobs(model, s)[:-1][s.loss_mask[:-1]].sum() for s in seqs)
    ref_loss.backward()
    ref = [p.grad.clone() for p in params]

    model.zero_grad()
    mbs = make_micro_batches(seqs, max_tokens=40)
    loss = 0.0
    for mb in mbs:
        lp = mb_logprobs(model, mb)
        mb_loss = lp[mb.loss_mask].sum()
        mb_loss.backward()
        loss += mb_loss.item()
    assert loss == pytest.approx(ref_loss.item(), abs=1e-4)
    for r, p in zip(ref, params):
        torch.testing.assert_close(p.grad, r, atol=1e-5, rtol=1e-5)
    model.zero_grad()


def test_perturbing_one_sequence_leaves_others_unchanged(model):
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=80)
    mb_pos = next(j for j, mb in enumerate(mbs) if len(mb.seq_index) >= 3)
    victim = mbs[mb_pos].seq_index[1]  # a sequence in the middle of a row
    changed = make_seqs()
    g = torch.Generator().manual_seed(7)
    shift = 1 + torch.randint(0, VOCAB - 1, (len(changed[victim]),), generator=g)  # every token changes
    changed[victim].input_ids = (changed[victim].input_ids + shift) % VOCAB
    mbs2 = make_micro_batches(changed, max_tokens=80)
    assert [mb.seq_index for mb in mbs2] == [mb.seq_index for mb in mbs]
    with torch.no_grad():
        a = mbs[mb_pos].unpack(mb_logprobs(model, mbs[mb_pos]))
        b = mbs2[mb_pos].unpack(mb_logprobs(model, mbs2[mb_pos]))
    for i, x, y in zip(mbs[mb_pos].seq_index, a, b):
        if i == victim:
            assert not torch.allclose(x, y)
        else:
            torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_padded_matches_packed(model):
    seqs = make_seqs()
    packed = make_micro_batches(seqs, max_tokens=40)
    padded = make_padded_micro_batches(seqs, max_tokens=40)
    assert [mb.seq_index for mb in padded] == [mb.seq_index for mb in packed]
    assert padding_fraction(packed) == 0.0 and padding_fraction(padded) > 0.2
    for mb in padded:
        b, lmax = mb.input_ids.shape
        assert mb.targets.shape == mb.loss_mask.shape == (b * lmax,)
        assert mb.loss_mask.sum() == sum(seqs[i].loss_mask[:-1].sum() for i in mb.seq_index)
    with torch.no_grad():
        a = scatter_back(packed, [mb_logprobs(model, mb) for mb in packed], len(seqs))
        b = scatter_back(padded, [mb_logprobs(model, mb) for mb in padded], len(seqs))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_pad_to_multiple_of(model):
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, pad_to_multiple_of=16)
    assert all(mb.input_ids.shape[1] % 16 == 0 for mb in mbs)
    assert padding_fraction(mbs) > 0
    for mb in mbs:
        assert not mb.loss_mask[mb.num_tokens :].any() and not mb.targets[mb.num_tokens :].any()
    with torch.no_grad():
        got = scatter_back(mbs, [mb_logprobs(model, mb) for mb in mbs], len(seqs))
        for s, lp in zip(seqs, got):
            torch.testing.assert_close(lp, alone_logprobs(model, s), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pad", [None, 16])
def test_flash_varlen_kwargs(pad):
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, attn_impl="flash_attention_2", pad_to_multiple_of=pad)
    for mb in mbs:
        assert mb.attention_mask is None
        kw = mb.backbone_kwargs()
        assert "attention_mask" not in kw and kw["use_cache"] is False
        t = mb.input_ids.shape[1]
        cu = kw["cu_seq_lens_q"]
        assert cu is kw["cu_seq_lens_k"] and cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == t
        lens = cu.diff()
        assert kw["max_length_q"] == kw["max_length_k"] == int(lens.max()) and isinstance(kw["max_length_q"], int)
        # position ids restart at every cu_seqlens boundary, exactly what the varlen detection keys on
        starts = (kw["position_ids"][0] == 0).nonzero()[:, 0]
        assert torch.equal(starts.to(torch.int32), cu[:-1])


def test_flash_kwargs_isolate_under_sdpa_via_position_ids(model):
    """Without a mask, transformers derives the packed-sequence mask from restarting position ids
    (when no cache is used); the flash-path kwargs therefore also isolate sequences on an SDPA model."""
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, attn_impl="flash_attention_2")
    with torch.no_grad():
        got = scatter_back(mbs, [mb_logprobs(model, mb) for mb in mbs], len(seqs))
        for s, lp in zip(seqs, got):
            torch.testing.assert_close(lp, alone_logprobs(model, s), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ varlen SDPA (no T x T mask)


@pytest.fixture(scope="module")
def varlen_model():
    from fastdapo.packing.attention import register_attention

    name = register_attention()
    m = tiny_qwen2()
    m.set_attn_implementation(name)
    assert m.config._attn_implementation == name
    return m


@pytest.mark.parametrize("pad", [None, 16])
def test_varlen_sdpa_matches_unpacked(varlen_model, model, pad):
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, attn_impl="packed_sdpa", pad_to_multiple_of=pad)
    with torch.no_grad():
        got = scatter_back(mbs, [mb_logprobs(varlen_model, mb) for mb in mbs], len(seqs))
        for s, lp in zip(seqs, got):
            torch.testing.assert_close(lp, alone_logprobs(model, s), atol=1e-5, rtol=0)


def test_varlen_sdpa_gradients(varlen_model, model):
    seqs = make_seqs()
    mbs = make_micro_batches(seqs, max_tokens=40, attn_impl="packed_sdpa")
    varlen_model.zero_grad()
    for mb in mbs:
        mb_logprobs(varlen_model, mb)[mb.loss_mask].sum().backward()
    model.zero_grad()
    sum(alone_logprobs(model, s)[:-1][s.loss_mask[:-1]].sum() for s in seqs).backward()
    for a, b in zip(varlen_model.parameters(), model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)
    varlen_model.zero_grad()
    model.zero_grad()


def test_cu_seqlens_from_position_ids():
    from fastdapo.packing.attention import cu_seqlens_from_position_ids

    pos = torch.tensor([[0, 1, 2, 0, 0, 1]])
    assert cu_seqlens_from_position_ids(pos).tolist() == [0, 3, 4, 6]


# ------------------------------------------------------------------ negative control


def test_unmasked_packing_leaks(model):
    """The isolation checks above can fail: a plain causal row (no mask, no position reset) leaks."""
    seqs = make_seqs([6, 9])
    ids = torch.cat([s.input_ids for s in seqs])[None]
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0]
        lp = token_logprobs(model, hidden[6:], shifted_targets(seqs[1].input_ids))
        assert not torch.allclose(lp, alone_logprobs(model, seqs[1]), atol=1e-3)
