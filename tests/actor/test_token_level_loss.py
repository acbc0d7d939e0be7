"""Loss aggregation: K accumulated micro-batches give the gradient of the whole mini-batch as one, for the
token-level loss (token-mean) and the sample-level one (seq-mean-token-mean)."""

import pytest
import torch

from fastdapo.actor.actor import Actor, UpdateStats
from fastdapo.actor.ds_engine import build_ds_engine
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.algorithm.sequences import Sequence
from fastdapo.config import load_config
from fastdapo.packing.layouts import SharedPromptBatch
from fastdapo.packing.packer import build_packer
from fastdapo.runtime import distributed as D
from fastdapo.toy.model import tiny_qwen2
from fastdapo_kernels.reference import reference_dapo_loss

VOCAB = 48


def make_sequences(seed=0, n=10):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n):
        p_len, r_len = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g))
        ids = torch.randint(3, VOCAB, (p_len + r_len,), generator=g)
        mask = torch.zeros(p_len + r_len, dtype=torch.bool)
        mask[p_len - 1 : p_len + r_len - 1] = True
        adv = torch.full((p_len + r_len,), float(torch.randn(1, generator=g)))
        old = -torch.rand(p_len + r_len, generator=g) * 6  # far from current log-probs: clipping active
        seqs.append(Sequence(ids, mask, advantages=adv, old_logprobs=old))
    return seqs


def actor_grads(seqs, max_tokens, mode="token-mean"):
    D.init_distributed(torch.device("cpu"), "gloo")
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    cfg = load_config()
    cfg.distributed.zero_stage = 0
    policy = PolicyWithLoss(model, LossSettings(impl="torch", loss_agg_mode=mode))
    engine = build_ds_engine(policy, cfg, torch.float32, torch.device("cpu"))
    actor = Actor(engine, build_packer(max_tokens, model.config._attn_implementation, False), torch.device("cpu"))
    loss = actor.accumulate_gradients(seqs)
    n_micro = len(actor.micro_batches(seqs))
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}, n_micro


def reference_grads(seqs, per_micro=None, mode="token-mean"):
    """Plain autograd over each sequence run alone; optionally the buggy per-micro-batch mean. seq-mean-token-mean:
    each sequence's token-mean loss, averaged over the sequences that have a loss token (verl's definition)."""
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    hs, tg, old, adv, mask = [], [], [], [], []
    for s in seqs:
        h = model.model(input_ids=s.input_ids[None], use_cache=False).last_hidden_state[0]
        hs.append(h)
        tg.append(torch.cat([s.input_ids[1:], torch.zeros(1, dtype=torch.long)]))
        old.append(s.old_logprobs)
        adv.append(s.advantages)
        mask.append(s.loss_mask)
    w = model.lm_head.weight
    if mode == "seq-mean-token-mean":
        losses = [
            reference_dapo_loss(h, w, t, o, a, m, dual_clip=None)[0]
            for h, t, o, a, m in zip(hs, tg, old, adv, mask)
            if m.any()
        ]
        loss = torch.stack(losses).mean()
    elif per_micro is None:
        loss, _ = reference_dapo_loss(
            torch.cat(hs), w, torch.cat(tg), torch.cat(old), torch.cat(adv), torch.cat(mask), dual_clip=None
        )  # as LossSettings below
    else:  # mean per chunk of sequences, then averaged: the known peer bug
        losses = []
        for i in range(0, len(seqs), per_micro):
            sl = slice(i, i + per_micro)
            l, _ = reference_dapo_loss(
                torch.cat(hs[sl]),
                w,
                torch.cat(tg[sl]),
                torch.cat(old[sl]),
                torch.cat(adv[sl]),
                torch.cat(mask[sl]),
                dual_clip=None,
            )
            losses.append(l)
        loss = torch.stack(losses).mean()
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}


def rel_err(a, b):
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5
    return num / sum(float(b[k].pow(2).sum()) for k in b) ** 0.5


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_accumulated_micro_batches_equal_one_batch(mode):
    seqs = make_sequences()
    seqs[3].loss_mask[:] = False  # an overlong-filtered response: no loss token, and not counted as a sequence
    ref_loss, ref = reference_grads(seqs, mode=mode)
    loss_1, g_1, n_1 = actor_grads(seqs, max_tokens=10_000, mode=mode)
    loss_k, g_k, n_k = actor_grads(seqs, max_tokens=24, mode=mode)
    assert n_1 == 1 and n_k >= 4
    assert rel_err(g_1, ref) <= 1e-5 and rel_err(g_k, ref) <= 1e-5 and rel_err(g_k, g_1) <= 1e-5
    assert loss_k == pytest.approx(ref_loss, rel=1e-5) and loss_1 == pytest.approx(ref_loss, rel=1e-5)


def test_per_micro_batch_mean_would_be_detected():
    seqs = make_sequences(seed=1)
    _, ref = reference_grads(seqs)
    _, buggy = reference_grads(seqs, per_micro=3)
    _, sample_level = reference_grads(seqs, mode="seq-mean-token-mean")
    # the equality test above is sensitive to the normalization, and the two modes differ
    assert rel_err(buggy, ref) > 1e-2 and rel_err(sample_level, ref) > 1e-2


def test_on_policy_update_equals_explicit_old_logprob_pass():
    """One update per rollout step: skipping the old-log-prob pass must not change the gradient."""
    D.init_distributed(torch.device("cpu"), "gloo")
    grads = []
    for explicit in (True, False):
        seqs = make_sequences(seed=2)
        for s in seqs:
            s.old_logprobs = None
        model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
        cfg = load_config()
        cfg.distributed.zero_stage = 0
        engine = build_ds_engine(
            PolicyWithLoss(model, LossSettings(impl="torch")), cfg, torch.float32, torch.device("cpu")
        )
        actor = Actor(engine, build_packer(24, "sdpa", False), torch.device("cpu"))
        if explicit:
            old, _ = actor.score(seqs)
            for s, lp in zip(seqs, old):
                s.old_logprobs = lp
        actor.accumulate_gradients(seqs)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert rel_err(grads[1], grads[0]) <= 1e-5 and sum(float(g.abs().sum()) for g in grads[0].values()) > 0


def make_grouped_sequences(seed=4, groups=4, g_size=3):
    """Groups of responses to one prompt, as the trainer builds them (prompt_len and group set)."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for gid in range(groups):
        prompt = torch.randint(3, VOCAB, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g)
        p = prompt.numel()
        for _ in range(g_size):
            r = int(torch.randint(1, 12, (1,), generator=g))
            ids = torch.cat([prompt, torch.randint(3, VOCAB, (r,), generator=g)])
            mask = torch.zeros(p + r, dtype=torch.bool)
            mask[p - 1 : p + r - 1] = True
            seqs.append(
                Sequence(
                    ids,
                    mask,
                    advantages=torch.full((p + r,), float(torch.randn(1, generator=g))),
                    old_logprobs=-torch.rand(p + r, generator=g) * 6,
                    prompt_len=p,
                    group=gid,
                )
            )
    return seqs


@pytest.mark.parametrize("attn", ["sdpa", "packed_sdpa"])
def test_shared_prompt_actor_equals_unshared_reference(attn):
    """Prompts shared inside the real DeepSpeed actor: same loss, gradient and old log-probs."""
    from fastdapo.packing.attention import register_attention

    D.init_distributed(torch.device("cpu"), "gloo")
    seqs = make_grouped_sequences()
    ref_loss, ref = reference_grads(seqs)
    for max_tokens, share in ((10_000, True), (20, True), (20, False)):
        model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
        if attn == "packed_sdpa":
            model.set_attn_implementation(register_attention())
        cfg = load_config()
        cfg.distributed.zero_stage = 0
        engine = build_ds_engine(
            PolicyWithLoss(model, LossSettings(impl="torch")), cfg, torch.float32, torch.device("cpu")
        )
        actor = Actor(engine, build_packer(max_tokens, model.config._attn_implementation, share), torch.device("cpu"))
        old, _ = actor.score(seqs)
        stats = UpdateStats()
        loss = actor.accumulate_gradients(seqs, stats)
        mbs = actor.micro_batches(seqs)
        assert all(isinstance(mb, SharedPromptBatch) == share for mb in mbs)
        saving = stats.summary()["packing/shared_prompt_saving"]
        assert (saving > 0.1) if share else saving == 0.0
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        assert rel_err(grads, ref) <= 1e-5 and loss == pytest.approx(ref_loss, rel=1e-5)
        if max_tokens == 20:
            assert len(mbs) >= 3
        for s, lp in zip(seqs, old):
            with torch.no_grad():
                h = model.model(input_ids=s.input_ids[None], use_cache=False).last_hidden_state[0]
                want = torch.log_softmax(model.lm_head(h[:-1]), -1).gather(-1, s.input_ids[1:, None])[:, 0]
            m = s.loss_mask[:-1]
            torch.testing.assert_close(lp[:-1][m], want[m], atol=1e-5, rtol=0)


def test_dual_clip_fraction_is_reported_over_every_loss_token():
    D.init_distributed(torch.device("cpu"), "gloo")
    seqs = make_sequences(seed=5)
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    cfg = load_config()
    cfg.distributed.zero_stage = 0
    policy = PolicyWithLoss(model, LossSettings(impl="torch", dual_clip=1.5))
    engine = build_ds_engine(policy, cfg, torch.float32, torch.device("cpu"))
    actor = Actor(engine, build_packer(24, "sdpa", False), torch.device("cpu"))
    stats = UpdateStats()
    actor.accumulate_gradients(seqs, stats, backward=False)
    # the same fraction from the reference over the whole batch at once
    with torch.no_grad():
        hs = [model.model(input_ids=s.input_ids[None], use_cache=False).last_hidden_state[0] for s in seqs]
        _, ref = reference_dapo_loss(
            torch.cat(hs),
            model.lm_head.weight,
            torch.cat([torch.cat([s.input_ids[1:], torch.zeros(1, dtype=torch.long)]) for s in seqs]),
            torch.cat([s.old_logprobs for s in seqs]),
            torch.cat([s.advantages for s in seqs]),
            torch.cat([s.loss_mask for s in seqs]),
            dual_clip=1.5,
        )
    got = stats.summary()["clip_frac/dual"]
    assert got > 0 and got == pytest.approx(float(ref["clip_frac_dual"]), abs=1e-6)
