"""The vLLM adapter's pieces that need no vLLM: install hint, output conversion, startup-error translation."""

from types import SimpleNamespace

import pytest

from fastdapo.rollout import vllm_engine
from fastdapo.rollout.registry import build_engine


def test_missing_vllm_gives_install_hint(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"make install-vllm"):
        build_engine("vllm", model_path="x", tokenizer=None)


def test_request_outputs_become_grouped_generations():
    def comp(ids, text, reason):
        lps = [{t: SimpleNamespace(logprob=-0.5 * k)} for k, t in enumerate(ids)]
        return SimpleNamespace(token_ids=ids, text=text, finish_reason=reason, logprobs=lps)

    outputs = [
        SimpleNamespace(outputs=[comp([5, 1], "a", "stop"), comp([6, 7, 8], "bcd", "length")]),
        SimpleNamespace(outputs=[comp([9, 1], "z", "stop"), comp([2, 1], "y", "stop")]),
    ]
    gens = vllm_engine.to_generations(outputs, [[1, 2], [3]])
    assert [g.prompt_index for g in gens] == [0, 0, 1, 1]
    assert [g.truncated for g in gens] == [False, True, False, False]
    assert gens[1].response_ids == [6, 7, 8] and gens[1].text == "bcd" and gens[2].prompt_ids == [3]
    assert gens[1].logprobs == [0.0, -0.5, -1.0]


@pytest.mark.parametrize(
    "message,expected",
    [
        (
            "Model architectures ['FooForCausalLM'] are not supported for now. Supported architectures: [...]",
            r"^model.path m: vLLM cannot run architecture \['FooForCausalLM'\]",
        ),
        (
            "To serve at least one request with the models's max seq len (64), (0.1 GiB KV cache is needed, which is "
            "larger than the available KV cache memory (0.0 GiB)",
            r"^rollout.gpu_memory_utilization 0.01: too little memory",
        ),
    ],
)
def test_startup_errors_become_one_line(message, expected):
    err = vllm_engine.explain_startup_error(ValueError(message), "m", 0.01, 64)
    assert err is not None and "\n" not in str(err)
    assert __import__("re").match(expected, str(err))
    assert vllm_engine.explain_startup_error(RuntimeError("something else"), "m", 0.5, 64) is None


def _fake_llm(config_eos, vllm_eos):
    model_config = SimpleNamespace(
        try_get_generation_config=lambda: {} if config_eos is None else {"eos_token_id": config_eos}
    )
    return SimpleNamespace(
        llm_engine=SimpleNamespace(tokenizer=SimpleNamespace(eos_token_id=vllm_eos), model_config=model_config)
    )


def test_vllm_stop_ids_are_the_shared_rule_over_vllms_generation_config():
    tok = SimpleNamespace(eos_token_id=1)
    assert vllm_engine.vllm_stop_ids(_fake_llm([99, 1], 1), tok, "m") == [99, 1]
    assert vllm_engine.vllm_stop_ids(_fake_llm(99, 1), tok, "m") == [99, 1]
    assert vllm_engine.vllm_stop_ids(_fake_llm(None, 1), None, "m") == [1]  # no trainer tokenizer: vLLM's


def test_a_tokenizer_whose_eos_vllm_would_not_share_is_refused():
    with pytest.raises(
        vllm_engine.RolloutConfigError, match=r"^model.path m: vLLM's tokenizer ends responses at EOS id 2"
    ):
        vllm_engine.vllm_stop_ids(_fake_llm([99], 2), SimpleNamespace(eos_token_id=1), "m")
