"""A vLLM engine built inside a running process group (the trainer's, DeepSpeed's) leaves it intact on close."""

import socket

import pytest
import torch.distributed as dist

pytest.importorskip("vllm")

from fastdapo.rollout.vllm_engine import VLLMEngine  # noqa: E402
from fastdapo.toy.tokenizer import build_char_tokenizer  # noqa: E402
from tests.rollout.rollout_models import tiny_model  # noqa: E402


def test_close_keeps_the_process_group_it_joined(tmp_path, monkeypatch):
    ours = not dist.is_initialized()
    if ours:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for k, v in {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
        }.items():
            monkeypatch.setenv(k, v)
        dist.init_process_group("gloo")
    try:
        world, sub = dist.group.WORLD, dist.new_group([0])
        tok = build_char_tokenizer()
        tiny_model(len(tok), tied=True).save_pretrained(tmp_path)
        tok.save_pretrained(tmp_path)
        VLLMEngine(str(tmp_path), tok, seed=0, max_model_len=64, gpu_memory_utilization=0.1).close()
        assert dist.is_initialized() and dist.group.WORLD is world
        assert dist.get_global_rank(sub, 0) == 0  # subgroups (DeepSpeed's) still registered
    finally:
        if ours and dist.is_initialized():
            dist.destroy_process_group()
