"""The generator process of asynchronous rollouts: weights arrive exactly (its log-probs equal the trainer
model's), versions switch only between requests, and a generator that dies is named in one line."""

import os
import signal

import pytest
import torch

from fastdapo.rollout.base import SamplingParams
from fastdapo.rollout.generator_process import GeneratorError, GeneratorProcess, GeneratorSpec, Request
from fastdapo.rollout.weight_stream import named_weights
from fastdapo.rollout.weight_transfer import WeightSender, buckets, layout_of
from fastdapo.runtime.distributed import free_port
from fastdapo.toy.model import tiny_qwen2
from fastdapo.toy.tokenizer import build_char_tokenizer


def model_dir(tmp_path, tied: bool):
    tok = build_char_tokenizer()
    model = tiny_qwen2(len(tok), 32, 2, 4, seed=1)
    if not tied:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 1.5)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    return tmp_path / "m", model, tok


def start(path, model, bucket_bytes=2**12):
    port = free_port()
    layout = layout_of(named_weights(model))
    spec = GeneratorSpec("torch", str(path), "float32", "sdpa", 1, "127.0.0.1", port, layout, seed=3,
                         bucket_bytes=bucket_bytes, engine_kwargs={"batch_size": 64})  # fmt: skip
    proc = GeneratorProcess(spec, start_timeout_s=120)
    sender = WeightSender("127.0.0.1", port, layout, bucket_bytes=bucket_bytes)
    proc.wait_ready()
    return proc, sender


def logprobs_of(model, gen):
    ids = torch.tensor([gen.prompt_ids + gen.response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(gen.prompt_ids) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(gen.response_ids)[:, None]).squeeze(1)


@pytest.mark.parametrize("tied", [True, False])
def test_after_a_transfer_the_generator_samples_from_the_trainer_weights(tmp_path, tied):
    path, model, tok = model_dir(tmp_path, tied)
    proc, sender = start(path, model)
    try:
        sender.send(0, named_weights(model))
        with torch.no_grad():  # the trainer moves on: the generator must follow, not keep its load from disk
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        sender.send(1, named_weights(model))
        prompt = tok("12+7=")["input_ids"]
        proc.send(Request(0, [prompt], SamplingParams(n=4, temperature=1.0, max_new_tokens=8), min_version=1))
        result = proc.recv(timeout_s=120)
        assert result.version == 1 and len(result.generations) == 4
        worst = max((logprobs_of(model, g) - torch.tensor(g.logprobs)).abs().max() for g in result.generations)
        assert worst <= 1e-5, worst
    finally:
        proc.close()
    assert not proc.proc.is_alive()


def test_buckets_group_one_dtype_within_the_bound():
    from fastdapo.rollout.weight_transfer import Entry

    layout = [Entry("a", (10,), torch.float32), Entry("b", (10,), torch.float32), Entry("c", (4,), torch.int64),
              Entry("d", (100,), torch.float32), Entry("e", (1,), torch.float32)]  # fmt: skip
    assert buckets(layout, 80) == [[0, 1], [2], [3], [4]]


def test_a_generator_that_dies_is_named(tmp_path):
    path, model, _ = model_dir(tmp_path, True)
    proc, sender = start(path, model)
    try:
        sender.send(0, named_weights(model))
        os.kill(proc.proc.pid, signal.SIGKILL)
        pid = proc.proc.pid
        with pytest.raises(GeneratorError, match=rf"generator process \(pid {pid}\) ended: killed by SIGKILL"):
            proc.send(Request(0, [[5, 6]], SamplingParams(n=2, max_new_tokens=2)))
            proc.recv(timeout_s=60)
    finally:
        proc.close()


def test_a_broken_weight_link_ends_the_generator_with_its_reason(tmp_path):
    """The trainer may be blocked sending when the link fails: the generator reports why and ends at once."""
    path, model, _ = model_dir(tmp_path, True)
    proc, sender = start(path, model)
    try:
        sender.send(0, named_weights(model))
        del sender.pg  # the trainer's end of the link goes away
        pid = proc.proc.pid
        with pytest.raises(GeneratorError, match=rf"\(pid {pid}\) failed: weight transfer from the trainer failed"):
            for _ in range(60):
                proc.recv(timeout_s=1)
        assert proc.proc.exitcode == 1
    finally:
        proc.close()
