"""The default CPU attention: per-sequence SDPA for packed rows, standard SDPA for generation."""

import torch
from transformers import AutoModelForCausalLM

from fastdapo.algorithm.sequences import Sequence
from fastdapo.packing.attention import register_attention
from fastdapo.packing.packed import make_micro_batches
from fastdapo.toy.model import tiny_qwen2


def test_packed_rows_isolated_and_generation_unchanged(tmp_path):
    base = tiny_qwen2(64, 32, 2, 4, seed=1).eval()
    base.save_pretrained(tmp_path)
    packed = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=register_attention()).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [Sequence(torch.randint(3, 60, (n,), generator=g), torch.ones(n, dtype=torch.bool)) for n in (5, 9, 3, 7)]
    mb = make_micro_batches(seqs, 1000, attn_impl="packed_sdpa")[0]
    kwargs = mb.backbone_kwargs()
    assert kwargs.get("attention_mask") is None  # no [T, T] mask is built
    h = packed.model(**kwargs).last_hidden_state[0]
    ref = torch.cat(
        [base.model(input_ids=seqs[i].input_ids[None], use_cache=False).last_hidden_state[0] for i in mb.seq_index]
    )
    assert (h - ref).abs().max() < 1e-5

    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    att = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    kw = dict(input_ids=ids, attention_mask=att, do_sample=False, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(base.generate(**kw), packed.generate(**kw))
