import pytest
import torch

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.layouts import SharedPromptBatch
from fastdapo.packing.packed import make_micro_batches, scatter_back
from fastdapo.packing.packer import PackStats, PlainPacker, SharedPromptPacker, build_packer
from fastdapo.packing.shared_prompt import make_bundles, make_shared_micro_batches
from tests.packing.test_packing import VOCAB, alone_logprobs, shifted_targets, tiny_qwen2

# (prompt length, response lengths) per group; responses of very different lengths, one of length 1
GROUPS = [(6, [4, 9, 1]), (3, [7, 2]), (11, [5, 5, 3, 8])]


def make_group_seqs(groups=GROUPS, seed=3):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for gid, (p, rs) in enumerate(groups):
        prompt = torch.randint(0, VOCAB, (p,), generator=g)
        adv = float(torch.randn(1, generator=g))
        for r in rs:
            ids = torch.cat([prompt, torch.randint(0, VOCAB, (r,), generator=g)])
            mask = torch.zeros(p + r, dtype=torch.bool)
            mask[p - 1 : p + r - 1] = torch.rand(r, generator=g) < 0.8
            seqs.append(
                Sequence(
                    input_ids=ids,
                    loss_mask=mask,
                    prompt_len=p,
                    group=gid,
                    advantages=torch.full((p + r,), adv),
                    old_logprobs=-torch.rand(p + r, generator=g),
                )
            )
    return seqs


def slot_logprobs(model, mb):
    hidden = model.model(**mb.backbone_kwargs()).last_hidden_state.reshape(-1, model.config.hidden_size)
    logits = model.lm_head(hidden.index_select(0, mb.pred_index))
    return torch.log_softmax(logits.float(), -1).gather(-1, mb.targets[:, None])[:, 0]


@pytest.fixture(scope="module")
def shared_models():
    from fastdapo.packing.attention import register_attention

    name = register_attention()
    out = {impl: tiny_qwen2(impl) for impl in ("sdpa", "eager")}
    m = tiny_qwen2()
    m.set_attn_implementation(name)
    out["packed_sdpa"] = m
    return out


# ------------------------------------------------------------------ layout


def test_bundles_put_each_prompt_once_and_save_its_tokens():
    seqs = make_group_seqs()
    mbs = make_shared_micro_batches(seqs, max_tokens=1000)
    assert len(mbs) == 1
    mb = mbs[0]
    plain = sum(len(s) for s in seqs)
    shared = sum(p + sum(rs) for p, rs in GROUPS)
    assert mb.num_tokens == mb.input_ids.shape[1] == shared < plain
    # slots: one per response token; targets are the response tokens themselves
    assert mb.targets.numel() == sum(sum(rs) for _, rs in GROUPS)
    by_seq = dict(zip(mb.seq_index, mb.unpack(mb.targets)))
    for i, s in enumerate(seqs):
        p = s.prompt_len
        torch.testing.assert_close(by_seq[i][p - 1 : -1], s.input_ids[p:])
        torch.testing.assert_close(mb.unpack(mb.loss_mask.long())[mb.seq_index.index(i)].bool(), s.loss_mask)
    # position ids continue from the prompt for every response
    pos = mb.position_ids[0].tolist()
    assert pos[:6] == list(range(6)) and pos[6:10] == [6, 7, 8, 9] and pos[10:19] == list(range(6, 15))


def test_budget_splits_a_group_into_bundles_and_balances():
    seqs = make_group_seqs()
    bundles = make_bundles(seqs, max_tokens=20)
    assert [len(b) for b in bundles] == [20, 12, 16, 19, 19]  # group 2 (prompt 11) is split in three
    assert sorted(i for b in bundles for i in b.seq_index) == list(range(len(seqs)))
    assert SharedPromptPacker(20).plan(seqs).count == 5
    mbs = make_shared_micro_batches(seqs, max_tokens=20, num_micro_batches=7)  # two empty padding micro-batches
    assert len(mbs) == 7 and sum(mb.num_tokens == 0 for mb in mbs) == 2
    assert all(mb.num_tokens <= 20 for mb in mbs)
    over = make_bundles(seqs, max_tokens=12)  # 11 + 8 > 12: a lone response over the budget gets its own bundle
    assert any(len(b) > 12 and len(b.seq_index) == 1 for b in over)
    assert sorted(i for mb in mbs for i in mb.seq_index) == list(range(len(seqs)))


def test_bad_inputs_are_named():
    seqs = make_group_seqs()
    seqs[1].input_ids = seqs[1].input_ids.clone()
    seqs[1].input_ids[0] = (seqs[1].input_ids[0] + 1) % VOCAB
    with pytest.raises(ValueError, match="different prompts"):
        make_bundles(seqs, 100)
    seqs = make_group_seqs()
    seqs[2].loss_mask[0] = True
    with pytest.raises(ValueError, match="sequence 2: loss_mask is set inside the prompt"):
        make_bundles(seqs, 100)
    seqs = make_group_seqs()
    seqs[0].prompt_len = 0
    with pytest.raises(ValueError, match="sequence 0: prompt_len 0"):
        make_bundles(seqs, 100)
    with pytest.raises(ValueError, match="shared prompts need attn_impl"):
        make_shared_micro_batches(make_group_seqs(), 100, attn_impl="flash_attention_2")


# ------------------------------------------------------------------ numerics through a tiny Qwen2


@pytest.mark.parametrize("impl", ["sdpa", "eager", "packed_sdpa"])
def test_shared_matches_unshared_logprobs(shared_models, impl):
    model, ref = shared_models[impl], shared_models["sdpa"]
    seqs = make_group_seqs()
    mbs = make_shared_micro_batches(seqs, max_tokens=30, attn_impl=impl, num_micro_batches=3)
    with torch.no_grad():
        got = scatter_back(mbs, [slot_logprobs(model, mb) for mb in mbs], len(seqs))
        for s, lp in zip(seqs, got):
            want = alone_logprobs(ref, s)
            p = s.prompt_len
            torch.testing.assert_close(lp[p - 1 : -1], want[p - 1 : -1], atol=1e-5, rtol=0)
            assert bool((lp[: p - 1] == 0).all()) and float(lp[-1]) == 0.0


@pytest.mark.parametrize("impl", ["sdpa", "packed_sdpa"])
def test_shared_matches_unshared_gradients(shared_models, impl):
    model, ref = shared_models[impl], shared_models["sdpa"]
    seqs = make_group_seqs()
    weights = {i: 1.0 + 0.1 * i for i in range(len(seqs))}  # distinct per-sequence weights catch slot mix-ups

    ref.zero_grad()
    sum(weights[i] * alone_logprobs(ref, s)[s.loss_mask].sum() for i, s in enumerate(seqs)).backward()
    want = [p.grad.clone() for p in ref.parameters()]

    model.zero_grad()
    for mb in make_shared_micro_batches(seqs, max_tokens=30, attn_impl=impl):
        w = torch.cat([torch.full((n,), weights[i]) for i, (_, _, n, _) in zip(mb.seq_index, mb.slot_map)])
        (slot_logprobs(model, mb) * w)[mb.loss_mask].sum().backward()
    for a, b in zip(model.parameters(), want):
        torch.testing.assert_close(a.grad, b, atol=1e-5, rtol=1e-5)
    model.zero_grad()
    ref.zero_grad()


def test_perturbing_one_response_or_prompt_changes_only_its_own(shared_models):
    model = shared_models["packed_sdpa"]
    seqs = make_group_seqs()
    [mb] = make_shared_micro_batches(seqs, max_tokens=1000)
    with torch.no_grad():
        base = mb.unpack(slot_logprobs(model, mb))

        def rerun(edit):
            changed = make_group_seqs()
            edit(changed)
            [mb2] = make_shared_micro_batches(changed, max_tokens=1000)
            assert mb2.seq_index == mb.seq_index
            return mb2.unpack(slot_logprobs(model, mb2))

        def new_response(c):  # every response token of sequence 1 changes (group 0)
            p = c[1].prompt_len
            c[1].input_ids = c[1].input_ids.clone()
            c[1].input_ids[p:] = (c[1].input_ids[p:] + 1) % VOCAB

        got = rerun(new_response)
        for pos, i in enumerate(mb.seq_index):
            if i == 1:
                assert not torch.allclose(got[pos], base[pos])
            else:
                torch.testing.assert_close(got[pos], base[pos], atol=1e-6, rtol=0)

        def new_prompt(c):  # group 1 (sequences 3, 4) gets another prompt
            for i in (3, 4):
                c[i].input_ids = c[i].input_ids.clone()
                c[i].input_ids[0] = (c[i].input_ids[0] + 5) % VOCAB

        got = rerun(new_prompt)
        for pos, i in enumerate(mb.seq_index):
            same = torch.allclose(got[pos], base[pos], atol=1e-6, rtol=0)
            assert same == (i not in (3, 4))


def test_response_cannot_see_a_sibling(shared_models):
    """Negative control: a plain causal row [P | R1 | R2] lets R2 see R1, which the shared layout forbids."""
    model = shared_models["sdpa"]
    seqs = make_group_seqs([(4, [5, 6])])
    row = torch.cat([seqs[0].input_ids, seqs[1].input_ids[4:]])[None]
    with torch.no_grad():
        hidden = model.model(input_ids=row).last_hidden_state[0]
        targets = shifted_targets(seqs[1].input_ids[4:])[:, None]
        leaky = torch.log_softmax(model.lm_head(hidden[9:]), -1).gather(-1, targets)
        assert not torch.allclose(leaky[:-1, 0], alone_logprobs(model, seqs[1])[4:-1], atol=1e-3)


def test_plain_packing_still_accepts_prompt_metadata():
    seqs = make_group_seqs()
    mbs = make_micro_batches(seqs, max_tokens=1000)
    assert not isinstance(mbs[0], SharedPromptBatch) and mbs[0].num_tokens == sum(len(s) for s in seqs)


@pytest.mark.parametrize("batched", [True, False])
def test_batched_and_looped_shared_attention_agree_with_the_mask(batched):
    """Both execution strategies against SDPA with the explicit 4-D shared-prompt mask, GQA included."""
    from fastdapo.packing.shared_attention import SharedPromptLayout, shared_prompt_attention
    from fastdapo.packing.shared_prompt import shared_prompt_mask

    bundles = [(0, 5, [3, 1, 6]), (15, 2, [4]), (21, 3, [])]  # the last one: trailing padding block
    t = 24
    bundle_ids = torch.cat([torch.full((5 + 10,), 0), torch.full((6,), 1), torch.full((3,), 2)])
    branch_ids = torch.tensor([0] * 5 + [1] * 3 + [2] + [3] * 6 + [0] * 2 + [1] * 4 + [0] * 3)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, t, 8, generator=g, requires_grad=True)
    k = torch.randn(1, 2, t, 8, generator=g, requires_grad=True)
    v = torch.randn(1, 2, t, 8, generator=g, requires_grad=True)
    got = shared_prompt_attention(q, k, v, SharedPromptLayout(bundles), batched=batched)
    mask = shared_prompt_mask(bundle_ids, branch_ids)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=mask
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    w = torch.randn(want.shape, generator=g)
    ga = torch.autograd.grad((got * w).sum(), (q, k, v))
    gb = torch.autograd.grad((want * w).sum(), (q, k, v))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_strategy_choice_follows_padding_waste():
    from fastdapo.packing.shared_attention import SharedPromptLayout

    assert SharedPromptLayout([(0, 30, [16, 20, 18, 24])]).use_batched()  # alike lengths: pad and batch
    assert not SharedPromptLayout([(0, 30, [4000, 10, 12, 9, 11, 10, 8])]).use_batched()  # one long tail: loop


def test_sliding_window_models_are_refused_not_silently_wrong():
    """The per-sequence SDPA has no sliding window: a bundle longer than the window must raise."""
    from fastdapo.packing.attention import per_sequence_sdpa

    q = torch.randn(1, 2, 12, 8)
    bundles = [(0, 6, [6])]
    with pytest.raises(NotImplementedError, match="sliding-window"):
        per_sequence_sdpa(None, q, q, q, None, sliding_window=4, shared_prompt_bundles=bundles)
    out, _ = per_sequence_sdpa(None, q, q, q, None, sliding_window=64, shared_prompt_bundles=bundles)
    assert out.shape == (1, 12, 2, 8)


@pytest.mark.parametrize("impl", ["sdpa", "packed_sdpa"])
def test_edge_cases_one_token_prompt_filtered_response_and_extra_micro_batches(shared_models, impl):
    """prompt_len 1, a one-token response, a fully masked (overlong-filtered) response and more
    micro-batches than bundles: same masked log-prob sum and gradients as the sequences run alone."""
    model, ref = shared_models[impl], shared_models["sdpa"]
    seqs = make_group_seqs([(1, [3, 1]), (4, [2, 5])], seed=9)
    seqs[3].loss_mask[:] = False  # overlong filtering masks a whole response
    ref.zero_grad()
    want_loss = sum(alone_logprobs(ref, s)[s.loss_mask].sum() for s in seqs)
    want_loss.backward()
    want = [p.grad.clone() for p in ref.parameters()]
    model.zero_grad()
    mbs = make_shared_micro_batches(seqs, max_tokens=1000, attn_impl=impl, num_micro_batches=4)
    assert len(mbs) == 4 and sum(mb.num_tokens == 0 for mb in mbs) == 2
    got_loss = 0.0
    for mb in mbs:
        loss = slot_logprobs(model, mb)[mb.loss_mask].sum()
        loss.backward()
        got_loss += float(loss)
    assert got_loss == pytest.approx(float(want_loss), abs=1e-5)
    for a, b in zip(model.parameters(), want):
        torch.testing.assert_close(a.grad, b, atol=1e-5, rtol=1e-5)
    model.zero_grad()
    ref.zero_grad()


def test_packer_is_chosen_from_the_attention_and_reports_per_step_totals():
    """Shared prompts only where the attention can express a shared prefix; PackStats sums every call."""
    assert isinstance(build_packer(64, "packed_sdpa", True), SharedPromptPacker)
    assert isinstance(build_packer(64, "flash_attention_2", True), PlainPacker)
    assert isinstance(build_packer(64, "sdpa", False), PlainPacker)
    assert build_packer(64, "some_custom_attention", False).attn_impl == "sdpa"
    seqs = make_group_seqs()
    packer = build_packer(20, "sdpa", True)
    plan = packer.plan(seqs)
    stats = PackStats()
    first = packer.pack(seqs[:4], packer.plan(seqs[:4]), packer.plan(seqs[:4]).count)
    stats.add(seqs[:4], first)
    mbs = packer.pack(seqs, plan, plan.count + 2)  # more micro-batches agreed with other ranks
    stats.add(seqs, mbs)
    assert len(mbs) == plan.count + 2 and sorted(i for mb in mbs for i in mb.seq_index) == list(range(len(seqs)))
    real = sum(mb.num_tokens for mb in first + mbs)
    assert stats.real == real and stats.plain == sum(len(s) for s in seqs[:4] + seqs)
    assert stats.metrics(stats.slots, stats.real, stats.plain)["packing/shared_prompt_saving"] == pytest.approx(
        1 - real / stats.plain
    )
