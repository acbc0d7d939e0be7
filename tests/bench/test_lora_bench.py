from fastdapo_bench.lora import markdown, measure


def test_lora_bench_counts_adapters_and_their_optimizer_state():
    full, lora = measure("toy", 0, steps=1, seqs=2), measure("toy", 4, steps=1, seqs=2)
    assert full["trainable"] == full["params"]
    # rank 4 on q, k, v, o (128->128, 128->64 twice, 128->128) and gate, up, down (128<->256), 2 layers
    assert lora["trainable"] == 2 * 4 * (256 + 192 + 192 + 256 + 3 * 384)
    assert lora["params"] == full["params"] + lora["trainable"]
    # Adam's two moments plus ZeRO-2's fp32 master copy: 12 bytes per trainable parameter
    for r in (full, lora):
        assert abs(r["optimizer_mib"] * 2**20 - 12 * r["trainable"]) <= 0.005 * 2**20
    assert full["step_s"] > 0 and lora["step_s"] > 0
    assert "lora r=4" in markdown([full, lora])
