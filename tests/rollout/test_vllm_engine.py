"""vLLM cannot be installed on CPU machines: the adapter's conversion and its install hint are tested."""
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
    with pytest.raises(ImportError, match=r"pip install 'fastdapo\[gpu\]'"):
        build_engine("vllm", model_path="x", tokenizer=None)


def test_request_outputs_become_grouped_generations():
    comp = lambda ids, text, reason: SimpleNamespace(token_ids=ids, text=text, finish_reason=reason)
    outputs = [SimpleNamespace(outputs=[comp([5, 1], "a", "stop"), comp([6, 7, 8], "bcd", "length")]),
               SimpleNamespace(outputs=[comp([9, 1], "z", "stop"), comp([2, 1], "y", "stop")])]
    gens = vllm_engine.to_generations(outputs, [[1, 2], [3]])
    assert [g.prompt_index for g in gens] == [0, 0, 1, 1]
    assert [g.truncated for g in gens] == [False, True, False, False]
    assert gens[1].response_ids == [6, 7, 8] and gens[1].text == "bcd" and gens[2].prompt_ids == [3]
