"""Ulysses sequence parallelism is exact: S ranks that each compute 1/S of a packed row give the per-token
log-probs and parameter gradients of one rank computing the whole row (gloo all-to-all, real DeepSpeed)."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

RANK_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import torch.distributed as dist
    from fastdapo.actor.policy import LossSettings, PolicyWithLoss
    from fastdapo.actor.ulysses import ulysses_attention
    from fastdapo.algorithm.sequences import Sequence
    from fastdapo.packing.attention import register_attention
    from fastdapo.packing.packer import build_packer
    from fastdapo.packing.sequence_shard import shard_micro_batch
    from fastdapo.runtime import distributed as D
    from fastdapo.runtime import sequence_parallel as SP
    from fastdapo.toy.model import tiny_qwen2

    share, size = sys.argv[1] in ("shared", "prompt-shard"), int(sys.argv[2])
    # prompt-shard: one long shared prompt fills rank 0's half, which then predicts no response token
    groups = [(40, (2, 3))] if sys.argv[1] == "prompt-shard" else [(5, (3, 9, 1)), (11, (7, 2)), (4, (13,))]
    attn = "packed_sdpa"
    D.init_distributed(torch.device("cpu"))
    SP.init_sequence_parallel(size)
    torch.manual_seed(0)
    model = tiny_qwen2(64, 32, 2, 4, seed=1)  # 4 attention heads, 2 key/value heads
    model.set_attn_implementation(register_attention())
    if sys.argv[1] == "flash":
        # flash-attention's contract (the row's cut points in cu_seq_lens / max_length, output [1, T, H, D]),
        # served by per-sequence SDPA: flash-attn itself needs CUDA
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from fastdapo.packing.attention import per_sequence_sdpa

        def flash_contract(module, q, k, v, mask, **kw):
            if "cu_seq_lens_q" not in kw:  # generation: one causal block per row
                from transformers.integrations.sdpa_attention import sdpa_attention_forward

                return sdpa_attention_forward(module, q, k, v, mask, **kw)
            assert mask is None and kw["max_length_q"] == int(kw["cu_seq_lens_q"].diff().max())
            assert kw["cu_seq_lens_q"][-1] == q.shape[2]  # the whole row, after the all-to-all
            return per_sequence_sdpa(module, q, k, v, None, **kw)

        ALL_ATTENTION_FUNCTIONS["flash_attention_2"] = flash_contract
        model.config._attn_implementation = attn = "flash_attention_2"
    g = torch.Generator().manual_seed(0)
    seqs = []
    for group, (prompt, lens) in enumerate(groups):
        p = torch.randint(3, 60, (prompt,), generator=g)
        for r in lens:
            ids = torch.cat([p, torch.randint(3, 60, (r,), generator=g)])
            mask = torch.zeros(len(ids), dtype=torch.bool)
            mask[prompt - 1 : -1] = True
            n = len(ids)
            seqs.append(Sequence(ids, mask, advantages=torch.randn(n, generator=g),
                                 old_logprobs=-4.2 + 0.3 * torch.randn(n, generator=g), prompt_len=prompt, group=group))
    packer = build_packer(10_000, attn, share, pad_to_multiple_of=size)
    mb = packer.pack(seqs, packer.plan(seqs), 1)[0]
    assert type(mb).__name__ == ("SharedPromptBatch" if share else "PackedBatch")
    policy = PolicyWithLoss(model, LossSettings(dual_clip=3.0))
    n_loss = torch.tensor(float(mb.loss_mask.sum()))

    # the whole row on this rank (the reference)
    ref_lp, _ = policy(mb, score_only=True)
    loss, _ = policy(mb, normalizer=n_loss)
    loss.backward()
    ref_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    # 1/S of the row on each rank of the group
    shard = shard_micro_batch(mb, SP.rank(), size, ulysses_attention(model, attn, SP.group()))
    assert shard.input_ids.shape[1] * size == mb.input_ids.shape[1]
    if sys.argv[1] == "prompt-shard" and SP.rank() == 0:
        assert shard.slots.numel() == 0
    lp, _ = policy(shard, score_only=True)
    whole = shard.whole(lp, SP.sum_over_group)
    assert (whole - ref_lp).abs().max() <= 1e-5, (whole - ref_lp).abs().max()
    loss, _ = policy(shard, normalizer=n_loss)
    loss.backward()
    total = SP.sum_over_group(loss.detach())
    ref_loss = policy(mb, normalizer=n_loss)[0].detach()
    assert abs(float(total - ref_loss)) <= 1e-6, (float(total), float(ref_loss))
    worst = 0.0
    for k, p in model.named_parameters():
        grad = SP.sum_over_group(p.grad)  # what DeepSpeed's reduction adds up
        worst = max(worst, float((grad - ref_grads[k]).abs().max()))
        assert float(ref_grads[k].abs().max()) > 0, k
    assert worst <= 1e-5, worst
    # generation through the same attention function is untouched by the routing
    out = model.generate(input_ids=seqs[0].input_ids[None, :5], do_sample=False, max_new_tokens=4, pad_token_id=0)
    assert out.shape == (1, 9)
    print("OK", worst)
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(*argv: str, world: int = 2) -> list[str]:
    port = str(free_port())
    procs = []
    for r in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(r), "LOCAL_RANK": str(r),
               "WORLD_SIZE": str(world), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_SCRIPT, *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    return outs


@pytest.mark.parametrize("layout", ["plain", "shared", "flash", "prompt-shard"])
def test_two_ranks_equal_one(layout):
    outs = run_ranks(layout, "2")
    assert all("OK" in o for o in outs)
