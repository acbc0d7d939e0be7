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


def reference_markdown() -> str:
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        sub = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            default = getattr(defaults, f.name)
            rows.append(f"| `{section.name}.{f.name}` | {_type_name(sub[f.name])} | `{default!r}` | "
                        f"{_allowed(f.metadata)} | {f.metadata.get('help', '')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_markdown())
