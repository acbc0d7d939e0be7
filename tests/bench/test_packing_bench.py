from fastdapo_bench.packing import run_packing_bench


def test_packing_bench_layouts_compute_what_they_claim():
    rows = {
        r["layout"]: r
        for r in run_packing_bench(
            num_seqs=12, cap=64, median=24.0, max_tokens=256, hidden=32, layers=1, vocab=64, repeats=1, group_size=4
        )
    }
    assert set(rows) == {"padded", "padded-sorted", "packed", "packed-varlen", "packed-shared"}
    real = rows["packed"]["real_tokens"]
    assert rows["packed"]["computed_tokens"] == rows["packed-varlen"]["computed_tokens"] == real
    assert rows["padded"]["computed_tokens"] > real and rows["padded"]["padding_fraction"] > 0
    # 3 groups of 4 share a 16-token prompt: 3 x 3 x 16 prompt tokens are not computed again
    assert rows["packed-shared"]["computed_tokens"] == real - 3 * 3 * 16
    assert all(r["tokens_per_s"] > 0 for r in rows.values())
