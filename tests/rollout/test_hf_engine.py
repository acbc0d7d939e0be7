import pytest

from fastdapo.rollout.base import SamplingParams
from fastdapo.rollout.registry import ENGINES, build_engine
from fastdapo.toy.model import tiny_qwen2
from fastdapo.toy.tokenizer import build_char_tokenizer


@pytest.fixture(scope="module")
def engine():
    tok = build_char_tokenizer()
    return build_engine("hf", model=tiny_qwen2(len(tok), 32, 1, 2), tokenizer=tok, batch_size=7)


def prompts(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_n_samples_per_prompt_grouped_and_truncation_flag(engine):
    ps = prompts(engine.tokenizer, ["What is 1+2?\n", "Hi\n", "What is 10-3?\n"])
    gens = engine.generate(ps, SamplingParams(n=4, temperature=1.0, max_new_tokens=6))
    assert [g.prompt_index for g in gens] == [0] * 4 + [1] * 4 + [2] * 4
    eos = engine.tokenizer.eos_token_id
    for g in gens:
        assert g.prompt_ids == ps[g.prompt_index]
        assert 1 <= len(g.response_ids) <= 6
        if g.truncated:
            assert len(g.response_ids) == 6 and eos not in g.response_ids
        else:
            assert g.response_ids[-1] == eos and eos not in g.response_ids[:-1]
        assert g.text == engine.tokenizer.decode(g.response_ids, skip_special_tokens=True)


def test_seeded_generation_is_independent_of_batch_composition(engine):
    ps = prompts(engine.tokenizer, ["What is 1+2?\n", "Hi\n", "What is 10-3?\n"])
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8)
    together = engine.generate(ps, params, seeds=[11, 12, 13])
    alone = engine.generate(ps[1:2], params, seeds=[12])
    assert [g.response_ids for g in together[3:6]] == [g.response_ids for g in alone]
    assert all(g.prompt_index == 0 for g in alone)


def test_greedy_is_deterministic(engine):
    ps = prompts(engine.tokenizer, ["What is 1+2?\n"])
    a = engine.generate(ps, SamplingParams(n=2, temperature=0.0, max_new_tokens=5))
    b = engine.generate(ps, SamplingParams(n=2, temperature=0.0, max_new_tokens=5))
    assert a[0].response_ids == a[1].response_ids == b[0].response_ids


def test_engines_by_name_and_clear_vllm_error():
    assert set(ENGINES) >= {"hf", "vllm"}
    with pytest.raises(ValueError, match="unknown rollout engine"):
        build_engine("nope")


def test_the_models_own_sampling_settings_do_not_narrow_the_distribution():
    """An Instruct-style generation config (top-k 2, temperature 0.3) must not leak into rollouts: the engine
    samples from the distribution whose log-probs it records (logits / T, nothing else)."""
    import torch

    from fastdapo.rollout.base import SamplingParams
    from fastdapo.rollout.hf_engine import HFEngine
    from fastdapo.toy.model import tiny_qwen2
    from fastdapo.toy.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    model = tiny_qwen2(len(tok), 32, 1, 2, seed=0).eval()
    model.generation_config.update(do_sample=True, top_k=2, temperature=0.3)
    prompt = tok("1+2=")["input_ids"]
    torch.manual_seed(0)
    gens = HFEngine(model, tok, batch_size=512).generate([prompt], SamplingParams(n=400, max_new_tokens=1))
    first = [g.response_ids[0] for g in gens]
    assert len(set(first)) > 20, len(set(first))  # top-k 2 would allow two
    with torch.no_grad():
        logp = model(torch.tensor([prompt])).logits[0, -1].float().log_softmax(-1)
    assert max(abs(g.logprobs[0] - float(logp[g.response_ids[0]])) for g in gens) <= 1e-5
    assert model.generation_config.top_k == 2  # the model's own config is back
