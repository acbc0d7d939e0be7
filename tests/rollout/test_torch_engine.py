import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from fastdapo.rollout.base import SamplingParams
from fastdapo.rollout.hf_engine import HFEngine
from fastdapo.rollout.registry import ENGINES, build_engine
from fastdapo.toy.model import tiny_qwen2
from fastdapo.toy.tokenizer import build_char_tokenizer

TEXTS = ["What is 1+2?\n", "Hi\n", "What is 10-3? yes\n", "a", "What is 7*8?\n"]  # lengths 13, 3, 18, 1, 13


def _model(tok, eos_boost: float = 0.0):
    """Tiny Qwen2 with large random weights: the default init is so flat that greedy decoding repeats one
    token forever, which would hide cache and position bugs. `eos_boost` points the (tied) EOS embedding
    along the typical final hidden state, so EOS is sampled often enough to exercise stopping."""
    model = tiny_qwen2(len(tok), 32, 2, 2, seed=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3, generator=g)
        if eos_boost:
            h = model.model(torch.arange(3, len(tok))[None]).last_hidden_state[0].mean(0)
            model.get_input_embeddings().weight[tok.eos_token_id] = eos_boost * h / h.norm()
    return model


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return _model(tok)


@pytest.fixture(scope="module")
def eos_model(tok):
    return _model(tok, eos_boost=2.0)


def prompts(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_registered_by_name(tok, model):
    assert "torch" in ENGINES
    assert type(build_engine("torch", model=model, tokenizer=tok)).__name__ == "TorchEngine"


@pytest.mark.parametrize("seeded", [False, True])
def test_grouping_prompt_index_eos_and_truncation(tok, eos_model, seeded):
    engine = build_engine("torch", model=eos_model, tokenizer=tok, batch_size=8)  # 2 prompts per chunk: 3 chunks
    ps = prompts(tok, TEXTS)
    torch.manual_seed(0)
    eos_model.train()
    gens = engine.generate(
        ps, SamplingParams(n=4, temperature=1.0, max_new_tokens=6), seeds=[5, 6, 7, 8, 9] if seeded else None
    )
    assert eos_model.training  # mode restored
    assert [g.prompt_index for g in gens] == [i for i in range(len(ps)) for _ in range(4)]
    eos = tok.eos_token_id
    for g in gens:
        assert g.prompt_ids == ps[g.prompt_index]
        assert 1 <= len(g.response_ids) <= 6 and tok.pad_token_id not in g.response_ids
        if g.truncated:
            assert len(g.response_ids) == 6 and eos not in g.response_ids
        else:
            assert g.response_ids[-1] == eos and eos not in g.response_ids[:-1]
        assert g.text == tok.decode(g.response_ids, skip_special_tokens=True)
    # Both stopping reasons actually occur, including EOS before the last step.
    assert any(g.truncated for g in gens) and any(len(g.response_ids) < 6 for g in gens)


def test_decoding_stops_once_every_row_has_emitted_eos(tok, eos_model):
    engine = build_engine("torch", model=eos_model, tokenizer=tok, batch_size=64)
    calls = []
    hook = eos_model.register_forward_hook(lambda m, a, out: calls.append(out.logits.shape[0]))
    try:
        torch.manual_seed(0)
        gens = engine.generate(prompts(tok, TEXTS), SamplingParams(n=4, temperature=1.0, max_new_tokens=200))
    finally:
        hook.remove()
    longest = max(len(g.response_ids) for g in gens)
    assert not any(g.truncated for g in gens) and longest < 200
    assert len(calls) == longest  # one prefill + one forward per later token, none after the last EOS
    # finished rows are dropped from the decode batch: it only shrinks, and ends well below 5 prompts x 4
    decode = calls[1:]
    assert all(a >= b for a, b in zip(decode, decode[1:])) and decode[0] == 20 and decode[-1] < 10


def test_greedy_matches_hf_generate_token_for_token(tok, model):
    ps = prompts(tok, TEXTS)
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    want = [g.response_ids for g in HFEngine(model, tok, batch_size=64).generate(ps, params)]
    for bs in (64, 4):  # one chunk, and one prompt pair per chunk
        engine = build_engine("torch", model=model, tokenizer=tok, batch_size=bs)
        got = [g.response_ids for g in engine.generate(ps, params)]
        assert got == want
    assert len({tuple(r) for r in want}) >= 4 and len(set(want[0])) > 3  # the check is not vacuous


def test_greedy_matches_hf_generate_when_rows_finish_early(tok, eos_model):
    """Rows ending at different steps are dropped from the decode batch; the rest must not notice."""
    ps = prompts(tok, TEXTS)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=40)
    want = HFEngine(eos_model, tok, batch_size=64).generate(ps, params)
    assert len({len(g.response_ids) for g in want}) >= 3 and not all(g.truncated for g in want)
    for bs in (64, 2):
        got = build_engine("torch", model=eos_model, tokenizer=tok, batch_size=bs).generate(ps, params)
        assert [g.response_ids for g in got] == [g.response_ids for g in want]


def test_seeded_generation_reproducible_and_independent_of_batch_composition(tok, eos_model):
    engine = build_engine("torch", model=eos_model, tokenizer=tok, batch_size=64)
    ps = prompts(tok, TEXTS)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8)
    seeds = [11, 12, 13, 14, 15]
    together = [g.response_ids for g in engine.generate(ps, params, seeds=seeds)]
    torch.manual_seed(123)  # the global RNG must not matter
    assert [g.response_ids for g in engine.generate(ps, params, seeds=seeds)] == together
    for i in range(len(ps)):
        alone = engine.generate(ps[i : i + 1], params, seeds=seeds[i : i + 1])
        assert [g.response_ids for g in alone] == together[3 * i : 3 * i + 3]
        assert all(g.prompt_index == 0 for g in alone)
    other = [g.response_ids for g in engine.generate(ps, params, seeds=[s + 100 for s in seeds])]
    assert other != together


def test_seeded_sampling_matches_seeded_hf_engine_token_for_token(tok, eos_model):
    """Not required by the contract, but holds on CPU and is the strongest end-to-end check of the seeded
    path (prefill sharing, cache expansion, temperature, nucleus, EOS): HFEngine seeds the global RNG per
    prompt and torch.multinomial draws one sample as argmax(p / Exp(1) noise), which is what TorchEngine
    does with a per-prompt generator, so both engines give identical rollouts for the same seeds."""
    ps = prompts(tok, TEXTS)
    params = SamplingParams(n=4, temperature=0.9, top_p=0.8, max_new_tokens=10)
    seeds = [3, 1, 4, 1, 5]
    want = [g.response_ids for g in HFEngine(eos_model, tok).generate(ps, params, seeds=seeds)]
    got = [
        g.response_ids
        for g in build_engine("torch", model=eos_model, tokenizer=tok, batch_size=8).generate(ps, params, seeds=seeds)
    ]
    assert got == want


def _first_token_freqs(engine, prompt, params, seeds, vocab):
    torch.manual_seed(0)
    gens = engine.generate([prompt], params, seeds=seeds)
    return torch.bincount(torch.tensor([g.response_ids[0] for g in gens]), minlength=vocab).double() / len(gens)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("seeds", [None, [42]])
def test_first_token_distribution_matches_softmax(tok, model, temperature, seeds):
    engine = build_engine("torch", model=model, tokenizer=tok, batch_size=64)
    p = prompts(tok, TEXTS[:1])[0]
    with torch.no_grad():
        logits = model(torch.tensor([p])).logits[0, -1].double()
    want = (logits / temperature).softmax(-1)
    freqs = _first_token_freqs(
        engine, p, SamplingParams(n=10000, temperature=temperature, max_new_tokens=1), seeds, len(tok)
    )
    assert 0.5 * (freqs - want).abs().sum() < 0.05
    # Power check: T=1 vs T=0.7 differ by far more than the tolerance on this model.
    assert 0.5 * (logits.softmax(-1) - (logits / 0.7).softmax(-1)).abs().sum() > 0.15


def test_top_p_samples_only_the_nucleus_with_renormalized_probabilities(tok, model):
    engine = build_engine("torch", model=model, tokenizer=tok, batch_size=64)
    p = prompts(tok, TEXTS[:1])[0]
    with torch.no_grad():
        logits = model(torch.tensor([p])).logits[0, -1:].double()
    nucleus = TopPLogitsWarper(0.5)(None, TemperatureLogitsWarper(0.8)(None, logits))[0].softmax(-1)
    freqs = _first_token_freqs(
        engine, p, SamplingParams(n=10000, temperature=0.8, top_p=0.5, max_new_tokens=1), None, len(tok)
    )
    assert 1 < int((nucleus > 0).sum()) < len(tok) // 2
    assert set(freqs.nonzero().flatten().tolist()) == set(nucleus.nonzero().flatten().tolist())
    assert 0.5 * (freqs - nucleus).abs().sum() < 0.05


@pytest.mark.parametrize("seeded", [False, True])
def test_every_sampled_token_is_in_the_recomputed_nucleus(tok, eos_model, seeded):
    """Recomputing each response with a plain unpadded forward checks every decode step, so a wrongly
    expanded KV cache, mask or position would surface as tokens outside the true nucleus."""
    engine = build_engine("torch", model=eos_model, tokenizer=tok, batch_size=8)  # 2 prompts per chunk
    ps = prompts(tok, TEXTS)
    torch.manual_seed(1)
    temp, top_p = 0.8, 0.6
    gens = engine.generate(
        ps,
        SamplingParams(n=4, temperature=temp, top_p=top_p, max_new_tokens=10),
        seeds=[1, 2, 3, 4, 5] if seeded else None,
    )
    steps = 0
    for g in gens:
        with torch.no_grad():
            logits = eos_model(torch.tensor([g.prompt_ids + g.response_ids])).logits[0].double()
        logits = logits[len(g.prompt_ids) - 1 : -1]  # the distribution each response token was drawn from
        kept = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temp)(None, logits))
        chosen = kept.log_softmax(-1).gather(1, torch.tensor(g.response_ids)[:, None])
        assert torch.isfinite(chosen).all(), (g.prompt_index, g.response_ids)
        steps += len(g.response_ids)
    assert steps > 3 * len(gens)  # most responses run several steps past the shared prefill
