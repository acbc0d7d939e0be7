"""The renderings the reward-fidelity bench scores."""

from fastdapo_bench.reward_renderings import KIND_LABELS, renderings


def test_renderings_cover_the_ways_models_answer():
    kinds = [k for k, _ in renderings("204")]
    assert set(kinds) == set(KIND_LABELS)  # every kind has its label in the tables
    assert "Answer: 2 \\times 102" in [t for _, t in renderings("204")]
    assert "Answer: x+1" in [t for _, t in renderings("x")] and "unevaluated" not in dict(renderings("x"))
    boxed = dict(renderings("204"))
    assert "Answer" not in boxed["boxed_only"] + boxed["boxed_far"] + boxed["boxed_wrong"]
    assert len(boxed["boxed_far"]) - boxed["boxed_far"].rindex("\\boxed{") > 100  # outside verl's box window
