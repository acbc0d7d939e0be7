"""Every engine's Generation.logprobs are the sampled tokens' log-probs under the distribution it sampled
from: log_softmax(top_p(logits / T)), not the T = 1 log-probs (the temperature pitfall)."""

import pytest
import torch

from fastdapo.rollout.base import SamplingParams
from fastdapo.rollout.registry import build_engine
from fastdapo.toy.tokenizer import build_char_tokenizer
from tests.rollout.rollout_models import max_logprob_gap, tiny_model


@pytest.fixture(scope="module")
def setup():
    tok = build_char_tokenizer()
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ["What is 1+2?\n", "Hi\n"]]
    return tok, tiny_model(len(tok), tied=True), prompts


@pytest.mark.parametrize("name", ["torch", "hf"])
@pytest.mark.parametrize("temperature,top_p", [(0.6, 1.0), (1.4, 0.8)])
def test_logprobs_follow_sampling_distribution(setup, name, temperature, top_p):
    tok, model, prompts = setup
    torch.manual_seed(0)
    gens = build_engine(name, model=model, tokenizer=tok).generate(
        prompts, SamplingParams(n=3, temperature=temperature, top_p=top_p, max_new_tokens=6)
    )
    assert all(len(g.logprobs) == len(g.response_ids) for g in gens)
    assert max_logprob_gap(model, gens, temperature, top_p) <= 1e-4
    assert max_logprob_gap(model, gens, 1.0) > 1e-2  # T = 1 log-probs are not what was sampled from


@pytest.mark.parametrize("name", ["torch", "hf"])
def test_greedy_logprobs_are_the_model_distribution(setup, name):
    tok, model, prompts = setup
    gens = build_engine(name, model=model, tokenizer=tok).generate(
        prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=5)
    )
    assert max_logprob_gap(model, gens, 1.0) <= 1e-4
