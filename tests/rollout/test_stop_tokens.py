"""One stop rule for every engine: a response ends at any EOS id of the model's generation config or at the
tokenizer's EOS, keeps that token, and is not truncated; torch, HF and vLLM give the same responses."""

from types import SimpleNamespace

import pytest

from fastdapo.rollout.base import SamplingParams, model_stop_token_ids, stop_token_ids, to_generation
from fastdapo.rollout.registry import build_engine
from tests.rollout.rollout_models import chat_tokenizer, end_of_turn_model

TOK = chat_tokenizer()
TEXTS = ["What is 1+2?\n", "Hi\n", "a", "What is 10-3?\n", "x=", "Say yes.\n"]  # 0 ends at end-of-turn, 1 at EOS
PROMPTS = [TOK(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def chat_model():
    return end_of_turn_model(TOK, ends_at_eot=PROMPTS[0], ends_at_eos=PROMPTS[1])


def test_stop_ids_are_the_generation_config_eos_ids_plus_the_tokenizer_eos():
    tok = SimpleNamespace(eos_token_id=1)
    assert stop_token_ids([99, 5], tok) == [99, 5, 1]
    assert stop_token_ids(99, tok) == [99, 1]
    assert stop_token_ids([1, 99, 1], tok) == [1, 99]
    assert stop_token_ids(None, tok) == [1]
    assert stop_token_ids([99], SimpleNamespace(eos_token_id=None)) == [99]
    assert model_stop_token_ids(SimpleNamespace(), tok) == [1]  # no generation config: the tokenizer's EOS


def test_a_row_ends_at_its_first_stop_id_kept_and_not_truncated():
    eot = TOK.convert_tokens_to_ids("<|im_end|>")
    a, b = TOK.convert_tokens_to_ids(["a", "b"])
    gen = to_generation(TOK, [eot, 1], 0, [a], [a, b, eot, b, 1, 0], [-0.1, -0.2, -0.3, -0.4, -0.5, 0.0])
    assert gen.response_ids == [a, b, eot] and not gen.truncated and gen.logprobs == [-0.1, -0.2, -0.3]
    assert gen.text == "ab"
    gen = to_generation(TOK, [eot, 1], 0, [a], [a, b, a])
    assert gen.response_ids == [a, b, a] and gen.truncated and gen.text == "aba"
    # The text leaves out the stop token even when it is not special, as vLLM's does
    gen = to_generation(TOK, [b], 0, [a], [a, b, a])
    assert gen.response_ids == [a, b] and gen.text == "a"


def _check_stops(gens, eot: int) -> None:
    stops = {eot, TOK.eos_token_id}
    for g in gens:
        if g.truncated:
            assert len(g.response_ids) == GREEDY.max_new_tokens and not stops & set(g.response_ids)
        else:
            assert g.response_ids[-1] in stops and not stops & set(g.response_ids[:-1]), g.response_ids
        assert TOK.pad_token_id not in g.response_ids
        assert len(g.logprobs) == len(g.response_ids)
        assert g.text == TOK.decode(g.response_ids, skip_special_tokens=True)
    ends = [None if g.truncated else g.response_ids[-1] for g in gens]
    assert ends[:2] == [eot, TOK.eos_token_id] and ends.count(eot) >= 2 and None in ends  # all three endings


@pytest.mark.parametrize("name", ["torch", "hf"])
def test_shared_weight_engines_stop_at_end_of_turn_and_eos(chat_model, name):
    model, eot = chat_model
    engine = build_engine(name, model=model, tokenizer=TOK, batch_size=64)
    assert engine.stop_ids == [eot, TOK.eos_token_id]
    gens = engine.generate(PROMPTS, GREEDY)
    _check_stops(gens, eot)


def test_torch_and_hf_agree_when_rows_end_at_either_stop_id(chat_model):
    model, eot = chat_model
    want = [g.response_ids for g in build_engine("hf", model=model, tokenizer=TOK).generate(PROMPTS, GREEDY)]
    for bs in (64, 2):  # rows dropped from one decode batch, and one prompt pair per chunk
        got = build_engine("torch", model=model, tokenizer=TOK, batch_size=bs).generate(PROMPTS, GREEDY)
        assert [g.response_ids for g in got] == want
    assert [r[-1] for r in want[:2]] == [eot, TOK.eos_token_id]
    assert len({len(r) for r in want}) >= 3  # rows finish at different steps


@pytest.fixture(scope="module")
def vllm_engine(chat_model, tmp_path_factory):
    pytest.importorskip("vllm")
    from fastdapo.rollout.vllm_engine import VLLMEngine

    model, _ = chat_model
    path = tmp_path_factory.mktemp("chat")
    model.save_pretrained(path)
    TOK.save_pretrained(path)
    engine = VLLMEngine(str(path), TOK, seed=0, max_model_len=64, gpu_memory_utilization=0.1)
    yield engine
    engine.close()


def test_vllm_stops_where_torch_does(chat_model, vllm_engine):
    model, eot = chat_model
    torch_engine = build_engine("torch", model=model, tokenizer=TOK)
    assert vllm_engine.stop_ids == torch_engine.stop_ids == [eot, TOK.eos_token_id]
    got = vllm_engine.generate(PROMPTS, GREEDY)
    _check_stops(got, eot)
    want = torch_engine.generate(PROMPTS, GREEDY)
    assert [g.response_ids for g in got] == [g.response_ids for g in want]
    assert [g.text for g in got] == [g.text for g in want]
