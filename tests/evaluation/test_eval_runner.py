"""evaluate() with a scripted engine: grouping, scoring, per-problem JSONL, summary."""

import json

import pytest

from fastdapo.data.records import PromptRecord
from fastdapo.evaluation.report import summary_table
from fastdapo.evaluation.runner import evaluate
from fastdapo.rollout.base import Generation, RolloutEngine, SamplingParams


class ScriptedEngine(RolloutEngine):
    """Sample j of a prompt answers correctly when j < correct[prompt] (prompt = first token id)."""

    def __init__(self, answers, correct, shuffle_groups=False):
        self.answers, self.correct, self.calls, self.shuffle = answers, correct, 0, shuffle_groups

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for i, p in enumerate(prompts):
            pid = p[0]
            for j in range(params.n):
                ans = self.answers[pid] if j < self.correct[pid] else "nope"
                text = f"thinking...\nAnswer: ${ans}$"
                out.append(
                    Generation(
                        prompt_index=i,
                        prompt_ids=p,
                        response_ids=list(range(3 + j)),
                        text=text,
                        truncated=(j == params.n - 1),
                    )
                )
        if self.shuffle:
            out.reverse()
        return out


def _records():
    gts = ["12", "\\frac{1}{2}", "7", "1000"]
    srcs = ["aime24", "aime24", "amc23", "amc23"]
    return [
        PromptRecord(prompt=f"p{i}", prompt_ids=[i, 99], ground_truth=g, data_source=s, index=100 + i)
        for i, (g, s) in enumerate(zip(gts, srcs))
    ]


def test_evaluate_summary_and_jsonl(tmp_path):
    recs = _records()
    answers = ["12", "0.5", "7", "1{,}000"]  # 0.5 vs \frac12 goes through math-verify
    engine = ScriptedEngine(answers, correct=[4, 2, 0, 1])
    out = tmp_path / "res" / "eval.jsonl"
    # lenient verification: "0.5" matches \frac12 and "1{,}000" matches 1000 only under math_verify
    s = evaluate(
        engine,
        recs,
        SamplingParams(n=4, max_new_tokens=8),
        out_path=out,
        chunk_size=3,
        progress=False,
        reward="math_verify",
    )
    assert engine.calls == 2  # 4 records in chunks of 3
    assert s["k"] == 4 and s["num_problems"] == 4
    assert s["avg@4"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert s["pass@4"] == pytest.approx(3 / 4)
    # maj: p0 right; p1 tie 0.5 vs nope -> first seen (0.5) right; p2 wrong; p3 "nope" x3 wrong
    assert s["maj@4"] == pytest.approx(2 / 4)
    assert s["by_source"]["aime24"]["avg@4"] == pytest.approx(0.75)
    assert s["by_source"]["amc23"]["pass@4"] == pytest.approx(0.5)
    assert s["response_length/mean"] == pytest.approx(4.5)
    assert s["response_length/clip_frac"] == pytest.approx(0.25)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [100, 101, 102, 103]
    assert rows[1]["ground_truth"] == "\\frac{1}{2}"
    assert rows[1]["accs"] == [True, True, False, False]
    assert rows[1]["preds"][:2] == ["0.5", "0.5"] and rows[1]["preds"][2] == "nope"
    assert rows[3]["preds"][0] == "1000"
    assert rows[0]["lengths"] == [3, 4, 5, 6] and rows[0]["truncated"] == [False, False, False, True]
    assert rows[0]["avg"] == 1.0 and rows[2]["pass"] is False and rows[0]["maj"] is True
    assert "responses" not in rows[0]
    # the table renders every source plus the total
    table = summary_table(s)
    assert table.row_count == 3


def test_evaluate_saves_responses_and_progress(tmp_path):
    out = tmp_path / "eval.jsonl"
    evaluate(
        ScriptedEngine(["12"] * 4, [1] * 4),
        _records()[:1],
        SamplingParams(n=2),
        out_path=out,
        save_responses=True,
        progress=True,
    )
    row = json.loads(out.read_text())
    assert row["responses"][0].endswith("Answer: $12$")


def test_evaluate_rejects_ungrouped_engine_output():
    with pytest.raises(RuntimeError, match="contiguous"):
        evaluate(
            ScriptedEngine(["1"] * 4, [1] * 4, shuffle_groups=True), _records()[:2], SamplingParams(n=2), progress=False
        )


def test_reward_is_chosen_by_name():
    answers, correct = ["12", "0.5", "7", "1{,}000"], [4, 2, 0, 1]
    params = SamplingParams(n=4, max_new_tokens=8)
    strict = evaluate(ScriptedEngine(answers, correct), _records(), params, progress=False)  # default: dapo
    lenient = evaluate(ScriptedEngine(answers, correct), _records(), params, progress=False, reward="math_verify")
    # the DAPO reference reward compares normalized strings: "0.5" is not \frac{1}{2} there
    assert strict["avg@4"] < lenient["avg@4"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)


class BoxedEngine(ScriptedEngine):
    """Answers in a box only, with no Answer: line."""

    def generate(self, prompts, params):
        gens = super().generate(prompts, params)
        for g in gens:
            g.text = g.text.replace("Answer: $", "so \\boxed{").rstrip("$") + "}"
        return gens


def test_boxed_fallback_reaches_the_reward():
    answers, correct = ["12", "7", "7", "1000"], [4, 2, 0, 1]
    params = SamplingParams(n=4, max_new_tokens=8)
    plain = evaluate(BoxedEngine(answers, correct), _records(), params, progress=False)
    boxed = evaluate(BoxedEngine(answers, correct), _records(), params, progress=False, reward_boxed_fallback=True)
    # problem 1's box holds "7" for ground truth \frac{1}{2}: wrong either way
    assert plain["avg@4"] == 0.0 and boxed["avg@4"] == pytest.approx((1 + 0 + 0 + 0.25) / 4)


def test_pass_at_k_overall_and_per_source():
    answers, correct = ["12", "\\frac{1}{2}", "7", "1000"], [4, 2, 0, 1]  # c of n=4 per problem
    engine = ScriptedEngine(answers, correct)
    s = evaluate(engine, _records(), SamplingParams(n=4, max_new_tokens=8), progress=False, pass_k=(4, 2, 1))
    assert s["pass_k"] == [1, 2, 4] and {"pass@1", "pass@2", "pass@4"} <= set(s)
    # pass@2 per problem: 1 - C(4-c, 2) / C(4, 2) = 1, 5/6, 0, 1/2
    assert s["pass@1"] == pytest.approx(s["avg@4"]) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert s["pass@2"] == pytest.approx((1 + 5 / 6 + 0 + 0.5) / 4)
    assert s["pass@4"] == pytest.approx(3 / 4)
    assert s["by_source"]["aime24"]["pass@2"] == pytest.approx((1 + 5 / 6) / 2)
    assert s["by_source"]["amc23"]["pass@1"] == pytest.approx(0.125)
    columns = [c.header for c in summary_table(s).columns]
    assert ["pass@1", "pass@2", "pass@4"] == [c for c in columns if c.startswith("pass@")]


def test_pass_at_k_default_is_1_and_n():
    s = evaluate(ScriptedEngine(["12"] * 4, [1] * 4), _records()[:1], SamplingParams(n=4), progress=False)
    assert s["pass_k"] == [1, 4] and s["pass@1"] == pytest.approx(0.25) and s["pass@4"] == 1.0


def test_pass_k_above_n_fails_before_generating():
    engine = ScriptedEngine(["12"] * 4, [1] * 4)
    with pytest.raises(ValueError, match=r"pass@8 .*n=4"):
        evaluate(engine, _records(), SamplingParams(n=4), progress=False, pass_k=(1, 8))
    assert engine.calls == 0
