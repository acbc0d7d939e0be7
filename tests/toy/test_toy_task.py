import tempfile

from fastdapo.models import load_tokenizer
from fastdapo.rewards import dapo_math_reward
from fastdapo.toy.task import all_problems, reference_response, solve, to_records, toy_splits
from fastdapo.toy.tokenizer import build_char_tokenizer


def test_char_tokenizer_roundtrips_through_save_and_load():
    tok = build_char_tokenizer()
    text = "What is 12-19? End with Answer: N\nAnswer: -7"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        again = load_tokenizer(d)  # AutoTokenizer would swap in another class and drop spaces
        assert again(text, add_special_tokens=False)["input_ids"] == ids
        assert again.padding_side == "left" and again.eos_token_id == tok.eos_token_id


def test_splits_are_disjoint_and_sized():
    train, ev = toy_splits(20, 256)
    assert len(ev) == 256 and len(train) + len(ev) == len(all_problems(20))
    assert not set(train) & set(ev)


def test_reference_responses_earn_reward():
    tok = build_char_tokenizer()
    train, _ = toy_splits(10, 50)
    for rec, (a, op, b) in zip(to_records(train[:20], tok), train[:20]):
        assert rec.ground_truth == str(solve(a, op, b))
        assert dapo_math_reward(reference_response(a, op, b), rec.ground_truth).acc
        assert not dapo_math_reward(f"Answer: {solve(a, op, b) + 1}", rec.ground_truth).acc
