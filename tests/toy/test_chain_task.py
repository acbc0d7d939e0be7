"""The chain task's problems, splits, reference responses and warm-start demonstrations."""

import random

from fastdapo.rewards import dapo_math_reward
from fastdapo.toy.chain import (
    Chain,
    all_chains,
    chain_demo,
    chain_problems,
    chain_prompt,
    chain_records,
    chain_splits,
    reference_chain_response,
    solve_chain,
)
from fastdapo.toy.spec import CHAIN_MOST_STEPS, MAX_POSITIONS, chain_positions, chain_response_length, chain_space
from fastdapo.toy.tokenizer import build_char_tokenizer


def test_reference_response_works_each_step_counting_down():
    c = Chain("+", 13, 9, 3)
    assert chain_prompt(c) == "Start at 13 and add 9, 3 times. End with Answer: N\n"
    assert reference_chain_response(c) == "3: 13+9=22\n2: 22+9=31\n1: 31+9=40\nAnswer: 40"
    down = Chain("-", 95, 4, 2)
    assert chain_prompt(down) == "Start at 95 and subtract 4, 2 times. End with Answer: N\n"
    assert reference_chain_response(down) == "2: 95-4=91\n1: 91-4=87\nAnswer: 87"


def test_problems_span_the_promised_lengths_and_earn_reward():
    train, ev = chain_splits(2048, 16, 256)
    assert {c.steps for c in train} == {c.steps for c in ev} == set(range(2, 17))  # every chain length occurs
    for c in train + ev:
        response = reference_chain_response(c)
        assert dapo_math_reward(response, str(solve_chain(c))).acc
        assert not dapo_math_reward(response.replace("Answer:", "The answer is"), str(solve_chain(c))).acc
        assert len(response) == chain_response_length(c.steps)
        assert len(chain_prompt(c)) + len(response) < chain_positions(16) <= MAX_POSITIONS
    lengths = sorted(len(reference_chain_response(c)) for c in train)
    assert lengths[0] == 32 and lengths[-1] == 193  # tens to ~200 tokens
    assert lengths[len(lengths) // 4] < 70 and lengths[3 * len(lengths) // 4] > 130  # spread, not bunched


def test_the_space_is_counted_and_the_rule_knows_what_fits():
    for k in (2, 5, 16, CHAIN_MOST_STEPS):
        assert sum(map(len, all_chains(k).values())) == chain_space(k)
    assert all_chains(CHAIN_MOST_STEPS)[CHAIN_MOST_STEPS]  # the range's end is a real problem
    longest = max(all_chains(37)[37], key=lambda c: len(chain_prompt(c)))
    _, demo = chain_demo(longest, random.Random(0), noise=0.0, format_noise=1.0)
    assert len(chain_prompt(longest)) + len(demo) + 1 <= chain_positions(37) <= MAX_POSITIONS < chain_positions(38)


def test_split_is_disjoint_and_fixed_by_its_seed():
    train, ev = chain_splits(2048, 16, 256)
    assert len(ev) == 256 and len(train) == 1792 and len(set(train + ev)) == 2048
    assert not set(train) & set(ev)
    assert chain_splits(2048, 16, 256) == (train, ev)  # the run seed plays no part
    assert chain_problems(2048, 16, seed=1) != train + ev


def test_records_carry_the_answer_and_the_prompt_tokens():
    tok = build_char_tokenizer()
    problems = chain_problems(20, 16)
    for rec, c in zip(chain_records(problems, tok), problems):
        assert rec.ground_truth == str(solve_chain(c)) and rec.data_source == "toy-chain"
        assert len(rec.prompt_ids) == len(rec.prompt) and rec.extra["steps"] == c.steps


def test_demos_slip_one_line_and_carry_it_to_the_answer():
    rng = random.Random(0)
    for c in chain_problems(300, 16):
        prompt, clean = chain_demo(c, rng, noise=0.0, format_noise=0.0)
        assert prompt == chain_prompt(c) and clean == reference_chain_response(c)
        _, text = chain_demo(c, rng, noise=1.0, format_noise=0.0)
        assert len(text) == len(clean)  # as many lines, every total still two digits
        assert sum(a != b for a, b in zip(text.splitlines(), clean.splitlines())) >= 2  # the slip and the answer
        assert not dapo_math_reward(text, str(solve_chain(c))).acc
        _, text = chain_demo(c, rng, noise=0.0, format_noise=1.0)
        assert text.endswith(f"The answer is {solve_chain(c)}.") and not dapo_math_reward(text, str(solve_chain(c))).acc
