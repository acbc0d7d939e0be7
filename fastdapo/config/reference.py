"""Markdown reference of every config key, generated from the dataclasses (`python -m fastdapo.config.reference`)."""

from __future__ import annotations

import dataclasses
import typing

from fastdapo.config.load import range_text
from fastdapo.config.schema import Config


def _allowed(meta) -> str:
    if "choices" in meta:
        return " \\| ".join(map(str, meta["choices"]))
    if "range" in meta:
        return range_text(meta)
    return ""


def _type_name(tp) -> str:
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return name.replace("Optional[", "").rstrip("]") + (" or null" if "Optional" in str(tp) else "")


def _rows(cls, prefix: str) -> list[str]:
    """One row per leaf key; a nested dataclass (e.g. model.lora) contributes its keys one level deeper."""
    hints, defaults, rows = typing.get_type_hints(cls), cls(), []
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += _rows(tp, key + ".")
            continue
        rows.append(
            f"| `{key}` | {_type_name(tp)} | `{getattr(defaults, f.name)!r}` | "
            f"{_allowed(f.metadata)} | {f.metadata.get('help', '')} |"
        )
    return rows


def reference_markdown() -> str:
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    return "\n".join(rows + _rows(Config, ""))


if __name__ == "__main__":
    print(reference_markdown())
