"""Where each resolved config value came from (the schema default, the config file, or --set), for --dry-run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fastdapo.config.load import TOY_CONFIG, apply_overrides, read_config_file
from fastdapo.config.schema import Config


def _flatten(obj, prefix: str = "") -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}{f.name}", getattr(obj, f.name)
        out.update(_flatten(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return out


def _given(tree: dict, key: str) -> bool:
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _label(path: str | Path | None) -> str:
    if path:
        return str(path)
    real = TOY_CONFIG.resolve()
    try:
        return str(real.relative_to(Path.cwd()))
    except ValueError:
        return "configs/toy.yaml" if real.parent.name == "configs" else "built-in toy.yaml"


def config_sources(cfg: Config, path: str | Path | None, overrides: list[str]) -> list[tuple[str, object, str]]:
    """(key, value, source) for every key of `cfg` in schema order; source is 'default', the file, or '--set'."""
    from_file = read_config_file(path)
    from_cli = apply_overrides({}, list(overrides))
    label = _label(path)
    return [
        (key, value, "--set" if _given(from_cli, key) else label if _given(from_file, key) else "default")
        for key, value in _flatten(cfg).items()
    ]


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value.strip() == value and value else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def format_sources(rows: list[tuple[str, object, str]]) -> str:
    return "\n".join(f"{key} = {_show(value)}  ({source})" for key, value, source in rows)
