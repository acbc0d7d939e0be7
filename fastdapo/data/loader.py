"""Load prompt sets from parquet / jsonl files into ``PromptRecord`` lists.

Two row schemas are accepted:
- verl / DAPO: ``{"prompt": [{"role", "content"}, ...], "reward_model": {"ground_truth"},
  "data_source", "extra_info": {"index"}}`` (the prompt already carries the DAPO template);
- plain: ``{"problem" (or "question"), "answer"}``; the DAPO template is applied to the problem.

The chat messages are rendered with the tokenizer's chat template when it has one (else the raw
message text), identical prompts are de-duplicated (DAPO-Math-17k repeats each one ~100x), and
prompts longer than ``max_prompt_length`` tokens are dropped; both counts are reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastdapo.data.records import PromptRecord
from fastdapo.data.template import apply_dapo_template

log = logging.getLogger(__name__)

_TOKENIZE_BATCH = 1024


class DatasetError(ValueError):
    """A dataset file or one of its rows is malformed (the message names file, row and field)."""


@dataclass
class LoadStats:
    path: str
    rows: int = 0  # rows read
    duplicates: int = 0  # rows dropped because an identical prompt came earlier
    conflicting_duplicates: int = 0  # ... of which had a different ground truth than the kept one
    too_long: int = 0  # unique prompts dropped for exceeding max_prompt_length
    kept: int = 0
    max_prompt_length: int | None = None
    chat_template: bool = False  # whether the tokenizer's chat template was applied

    def summary(self) -> str:
        limit = "" if self.max_prompt_length is None else f" > {self.max_prompt_length} tokens"
        msg = (
            f"{self.path}: {self.kept} prompts kept from {self.rows} rows "
            f"({self.duplicates} duplicates removed, {self.too_long} too long{limit} dropped)"
        )
        if self.conflicting_duplicates:
            msg += f"; {self.conflicting_duplicates} duplicates had a different ground truth (first kept)"
        return msg


@dataclass
class _Row:
    messages: list[dict]
    ground_truth: str
    data_source: str
    index: int
    extra: dict = field(default_factory=dict)


# -- reading ------------------------------------------------------------------------------------
def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(row_number, row)`` from a .parquet, .jsonl or .json file; rows are numbered from 1
    (for jsonl: the line number)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        yield from _read_json(path)
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix!r} (expected .parquet, .jsonl or .json)")


def _read_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=2048)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read parquet file: {exc}") from exc
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _read_json(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open("rb") as f:
        head = f.read(1 << 12).lstrip()
        f.seek(0)
        if head.startswith(b"["):  # a JSON array of rows
            try:
                rows = json.loads(_decode(f.read(), path, None))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno})") from exc
            for i, row in enumerate(rows, 1):
                yield i, _require_object(row, path, i)
            return
        for lineno, raw in enumerate(f, 1):
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: row {lineno}: invalid JSON: {exc.msg}") from exc
            yield lineno, _require_object(row, path, lineno)


def _decode(raw: bytes, path: Path, lineno: int | None) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno in (None, 1) else "utf-8")
    except UnicodeDecodeError as exc:
        line = lineno if lineno is not None else raw.count(b"\n", 0, exc.start) + 1
        where = f"row {line}" if lineno is not None else f"line {line}"
        raise DatasetError(
            f"{path}: {where}: invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte "
            f"{exc.start + 1} (the file must be UTF-8)"
        ) from None


def _require_object(row: Any, path: Path, n: int) -> dict:
    if not isinstance(row, dict):
        raise DatasetError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
    return row


# -- row schema ---------------------------------------------------------------------------------
def _bad(path: Path, n: int, fld: str, why: str) -> DatasetError:
    return DatasetError(f"{path}: row {n}: field '{fld}' {why}")


def _ground_truth(value: Any, path: Path, n: int, fld: str) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        raise _bad(path, n, fld, f"must be a string or a number, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise _bad(path, n, fld, "is empty")
    return text


def _messages(value: Any, path: Path, n: int) -> list[dict]:
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(path, n, "prompt", "must be a non-empty list of {role, content} messages or a string")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise _bad(path, n, f"prompt[{i}]", "must be an object with 'role' and 'content'")
        role, content = msg.get("role"), msg.get("content")
        if not isinstance(role, str) or not role:
            raise _bad(path, n, f"prompt[{i}].role", "is missing or not a string")
        if not isinstance(content, str) or not content.strip():
            raise _bad(path, n, f"prompt[{i}].content", "is missing, empty or not a string")
        out.append({"role": role, "content": content})
    return out


def parse_row(row: dict, path: str | Path, n: int) -> _Row:
    """Validate one row of either schema (errors name the file, row number and field)."""
    path = Path(path)
    extra: dict = {}
    if "prompt" in row:
        messages = _messages(row["prompt"], path, n)
        rm = row.get("reward_model")
        if isinstance(rm, dict) and "ground_truth" in rm:
            gt = _ground_truth(rm["ground_truth"], path, n, "reward_model.ground_truth")
        elif "answer" in row:
            gt = _ground_truth(row["answer"], path, n, "answer")
        elif rm is not None and not isinstance(rm, dict):
            raise _bad(path, n, "reward_model", f"must be an object, got {type(rm).__name__}")
        else:
            raise DatasetError(f"{path}: row {n}: missing field 'reward_model.ground_truth'")
    elif "problem" in row or "question" in row:
        key = "problem" if "problem" in row else "question"
        problem = row[key]
        if not isinstance(problem, str) or not problem.strip():
            raise _bad(path, n, key, "is missing, empty or not a string")
        if "answer" not in row:
            raise DatasetError(f"{path}: row {n}: missing field 'answer'")
        gt = _ground_truth(row["answer"], path, n, "answer")
        messages = [{"role": "user", "content": apply_dapo_template(problem)}]
    else:
        raise DatasetError(
            f"{path}: row {n}: missing field 'prompt' (verl/DAPO schema) or "
            f"'problem' (plain schema); found fields: {', '.join(sorted(row)) or 'none'}"
        )
    info = row.get("extra_info")
    index = n - 1
    if isinstance(info, dict):
        extra["extra_info"] = info
        if isinstance(info.get("index"), int) and not isinstance(info.get("index"), bool):
            index = info["index"]
    for key in ("ability", "solution"):
        if row.get(key) is not None:
            extra[key] = row[key]
    source = row.get("data_source")
    return _Row(
        messages=messages, ground_truth=gt, data_source=str(source) if source else path.stem, index=index, extra=extra
    )


# -- rendering ----------------------------------------------------------------------------------
def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(messages: list[dict], tokenizer, apply_chat_template: bool = True) -> str:
    """Prompt text for the model: the chat template when there is one, else the message text."""
    if apply_chat_template and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages)


def _tokenize(texts: list[str], tokenizer, add_special_tokens: bool) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        enc = tokenizer(texts[start : start + _TOKENIZE_BATCH], add_special_tokens=add_special_tokens)
        out.extend(list(ids) for ids in enc["input_ids"])
    return out


def load_prompts(
    path: str | Path,
    tokenizer,
    max_prompt_length: int | None = None,
    apply_chat_template: bool = True,
    dedupe: bool = True,
    limit: int | None = None,
) -> tuple[list[PromptRecord], LoadStats]:
    """Read, validate, template, de-duplicate, tokenize and length-filter one prompt file.

    ``limit`` keeps the first ``limit`` unique prompts of the file (before the length filter).
    Raises ``DatasetError`` for malformed rows, naming the file, row number and field.
    """
    path = Path(path)
    use_chat = apply_chat_template and has_chat_template(tokenizer)
    stats = LoadStats(path=str(path), max_prompt_length=max_prompt_length, chat_template=use_chat)
    seen: dict[tuple, str] = {}
    unique: list[_Row] = []
    for n, raw in read_rows(path):
        stats.rows += 1
        row = parse_row(raw, path, n)
        # identical messages render to identical prompts: de-duplicate before templating
        key = tuple((m["role"], m["content"]) for m in row.messages)
        if dedupe and key in seen:
            stats.duplicates += 1
            if seen[key] != row.ground_truth:
                stats.conflicting_duplicates += 1
            continue
        seen[key] = row.ground_truth
        unique.append(row)
        if limit is not None and len(unique) >= limit:
            break
    if stats.rows == 0:
        raise DatasetError(f"{path}: no rows")
    rows = [(render_prompt(r.messages, tokenizer, apply_chat_template), r) for r in unique]
    # A chat template writes its own special tokens; raw text gets the tokenizer's usual ones.
    ids = _tokenize([t for t, _ in rows], tokenizer, add_special_tokens=not use_chat)
    records: list[PromptRecord] = []
    for (text, row), prompt_ids in zip(rows, ids):
        if max_prompt_length is not None and len(prompt_ids) > max_prompt_length:
            stats.too_long += 1
            continue
        records.append(
            PromptRecord(
                prompt=text,
                prompt_ids=prompt_ids,
                ground_truth=row.ground_truth,
                data_source=row.data_source,
                index=row.index,
                extra=row.extra,
            )
        )
    stats.kept = len(records)
    log.info(stats.summary())
    if stats.conflicting_duplicates:
        log.warning(
            "%s: %d duplicate prompts disagree on the ground truth; the first copy was kept",
            path,
            stats.conflicting_duplicates,
        )
    return records, stats
