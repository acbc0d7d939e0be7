"""Loading the real math sets (verl/DAPO schema) and plain {problem, answer} files."""

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastdapo.data import DAPO_TEMPLATE, DatasetError, apply_dapo_template, load_prompts, read_rows
from fastdapo.toy.tokenizer import build_char_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SETS = ["aime-2024", "amc-2023", "gsm8k-test-sample", "minerva-math-sample"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture
def chat_tok():
    t = build_char_tokenizer()
    t.chat_template = CHAT_TEMPLATE
    return t


def _jsonl_rows(name):
    return [json.loads(l) for l in (FIXTURES / f"{name}.jsonl").read_text().splitlines() if l.strip()]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", SETS)
def test_real_parquet_and_jsonl_agree(name, tok):
    rows = _jsonl_rows(name)
    recs_pq, st_pq = load_prompts(FIXTURES / f"{name}.parquet", tok, max_prompt_length=None)
    recs_js, st_js = load_prompts(FIXTURES / f"{name}.jsonl", tok, max_prompt_length=None)
    assert st_pq.rows == st_js.rows == st_pq.kept == len(rows)
    assert st_pq.duplicates == 0 and st_pq.too_long == 0 and not st_pq.chat_template
    assert [r.ground_truth for r in recs_pq] == [row["reward_model"]["ground_truth"].strip() for row in rows]
    assert [r.index for r in recs_pq] == [row["extra_info"]["index"] for row in rows]
    assert [r.data_source for r in recs_pq] == [row["data_source"] for row in rows]
    for a, b, row in zip(recs_pq, recs_js, rows):
        assert a.prompt == b.prompt == row["prompt"][0]["content"]  # no chat template: raw text
        assert a.prompt_ids == b.prompt_ids == tok(a.prompt)["input_ids"]
    if "minerva" in name:
        assert all("\\boxed" in r.extra["solution"] for r in recs_pq)


def test_dapo_template_matches_real_data():
    head, tail = DAPO_TEMPLATE.split("{problem}")
    for name in SETS:
        for row in _jsonl_rows(name):
            content = row["prompt"][0]["content"]
            assert content.startswith(head) and content.endswith(tail)


def test_chat_template_applied_when_present(chat_tok):
    recs, stats = load_prompts(FIXTURES / "aime-2024.parquet", chat_tok, max_prompt_length=None)
    assert stats.chat_template
    assert recs[0].prompt.startswith("<|user|>Solve the following") and recs[0].prompt.endswith("<|assistant|>")
    # add_special_tokens is off under a chat template: ids are exactly the rendered text's tokens
    assert recs[0].prompt_ids == chat_tok(recs[0].prompt, add_special_tokens=False)["input_ids"]
    raw, stats = load_prompts(FIXTURES / "aime-2024.parquet", chat_tok, None, apply_chat_template=False)
    assert not stats.chat_template and raw[0].prompt.startswith("Solve the following")


def test_plain_problem_answer_schema(tmp_path, tok):
    path = _write_jsonl(
        tmp_path / "plain.jsonl",
        [
            {"problem": "What is 2+3?", "answer": "5"},
            {"question": "What is 7*6?", "answer": 42},
        ],
    )
    recs, stats = load_prompts(path, tok)
    assert stats.kept == 2
    assert recs[0].prompt == apply_dapo_template("What is 2+3?")
    assert "What is 2+3?" in recs[0].prompt and recs[0].prompt.startswith("Solve the following")
    assert [r.ground_truth for r in recs] == ["5", "42"]
    assert [r.index for r in recs] == [0, 1] and recs[0].data_source == "plain"


def test_json_array_file(tmp_path, tok):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}]))
    recs, _ = load_prompts(path, tok)
    assert recs[0].ground_truth == "2"


def test_dedupe_counts_and_logs(tmp_path, tok, caplog):
    rows = _jsonl_rows("aime-2024")
    conflicting = json.loads(json.dumps(rows[0]))
    conflicting["reward_model"]["ground_truth"] = "999"
    path = _write_jsonl(tmp_path / "dup.jsonl", rows * 3 + [conflicting])
    with caplog.at_level(logging.INFO, logger="fastdapo.data.loader"):
        recs, stats = load_prompts(path, tok)
    assert stats.rows == 91 and stats.kept == 30
    assert stats.duplicates == 61 and stats.conflicting_duplicates == 1
    assert recs[0].ground_truth == rows[0]["reward_model"]["ground_truth"]  # first copy kept
    assert "61 duplicates removed" in caplog.text
    recs, stats = load_prompts(path, tok, dedupe=False)
    assert stats.kept == 91 and stats.duplicates == 0


def test_prompt_length_filter(tok):
    recs, _ = load_prompts(FIXTURES / "minerva-math-sample.jsonl", tok)
    lengths = sorted(len(r.prompt_ids) for r in recs)
    limit = lengths[len(lengths) // 2]
    kept, stats = load_prompts(FIXTURES / "minerva-math-sample.jsonl", tok, max_prompt_length=limit)
    assert stats.too_long == sum(n > limit for n in lengths) > 0
    assert stats.kept == len(kept) == len(recs) - stats.too_long
    assert all(len(r.prompt_ids) <= limit for r in kept)
    assert f"{stats.too_long} too long > {limit} tokens" in stats.summary()


def test_limit(tok):
    recs, stats = load_prompts(FIXTURES / "gsm8k-test-sample.parquet", tok, limit=5)
    assert len(recs) == 5 and stats.rows == 5


GOOD = {
    "data_source": "x",
    "prompt": [{"role": "user", "content": "q"}],
    "ability": "MATH",
    "reward_model": {"ground_truth": "1", "style": "rule"},
    "extra_info": {"index": 0},
}


@pytest.mark.parametrize(
    "bad,field",
    [
        ({k: v for k, v in GOOD.items() if k != "reward_model"}, "reward_model.ground_truth"),
        ({**GOOD, "reward_model": {"style": "rule"}}, "reward_model.ground_truth"),
        ({**GOOD, "reward_model": {"ground_truth": None}}, "reward_model.ground_truth"),
        ({**GOOD, "reward_model": {"ground_truth": ["1", "2"]}}, "reward_model.ground_truth"),
        ({**GOOD, "reward_model": {"ground_truth": "  "}}, "reward_model.ground_truth"),
        ({**GOOD, "reward_model": "1"}, "reward_model"),
        ({**GOOD, "prompt": 3}, "prompt"),
        ({**GOOD, "prompt": []}, "prompt"),
        ({**GOOD, "prompt": [{"role": "user"}]}, "prompt[0].content"),
        ({**GOOD, "prompt": [{"content": "q"}]}, "prompt[0].role"),
        ({"problem": "What?"}, "answer"),
        ({"problem": "", "answer": "1"}, "problem"),
        ({"text": "hello"}, "prompt"),
    ],
)
def test_malformed_jsonl_row_named(tmp_path, tok, bad, field):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, bad])
    with pytest.raises(DatasetError) as err:
        load_prompts(path, tok)
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and f"'{field}'" in msg


def test_invalid_json_line_named(tmp_path, tok):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n{not json\n")
    with pytest.raises(DatasetError, match=r"broken\.jsonl: row 3: invalid JSON"):
        load_prompts(path, tok)
    path.write_text(json.dumps(GOOD) + "\n[1, 2]\n")
    with pytest.raises(DatasetError, match="row 2: expected a JSON object"):
        load_prompts(path, tok)


def test_malformed_parquet_row_named(tmp_path, tok):
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "reward_model": {"ground_truth": str(i)}} for i in range(5)
    ]
    rows[3]["reward_model"] = {"ground_truth": None}
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DatasetError, match=r"bad\.parquet: row 4: field 'reward_model\.ground_truth'"):
        load_prompts(path, tok)


def test_file_errors(tmp_path, tok):
    with pytest.raises(FileNotFoundError):
        load_prompts(tmp_path / "missing.jsonl", tok)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_prompts(tmp_path / "x.csv", tok)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_prompts(tmp_path / "empty.jsonl", tok)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="cannot read parquet"):
        load_prompts(tmp_path / "junk.parquet", tok)


def test_read_rows_numbers_jsonl_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert [n for n, _ in read_rows(path)] == [1, 3]


def test_invalid_utf8_byte_names_file_and_row(tmp_path, tok):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"problem": "1+1?", "answer": "2"}\n{"problem": "caf\xe9", "answer": "3"}\n')
    with pytest.raises(DatasetError, match=r"latin1.jsonl: row 2: invalid UTF-8 byte 0xe9"):
        load_prompts(path, tok)
    array = tmp_path / "array.json"
    array.write_bytes(b'[{"problem": "1+1?",\n "answer": "\xff"}]')
    with pytest.raises(DatasetError, match=r"array.json: line 2: invalid UTF-8 byte 0xff"):
        load_prompts(array, tok)
