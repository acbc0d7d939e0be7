"""YAML -> validated `Config`. Every error names the offending key in one line."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import yaml

from fastdapo.config.preflight import preflight_errors
from fastdapo.config.rules import check_rules
from fastdapo.config.schema import Config

# In a checkout these link to configs/toy.yaml and configs/toy-chain.yaml; a wheel carries them as files.
TOY_CONFIG = Path(__file__).resolve().parents[1] / "toy" / "toy.yaml"
TOY_CHAIN_CONFIG = TOY_CONFIG.with_name("toy-chain.yaml")


class ConfigError(ValueError):
    """A config problem a user can fix; the message names the key."""


def _nearest(name: str, options, prefix: str) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
    return f" (valid keys: {', '.join(sorted(options))})"


def _coerce(key: str, value: Any, tp) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML 1.1 reads on/off/yes/no as booleans; a string field means on/off
            return "on" if value else "off"
        return str(value)
    return value


def range_text(meta) -> str:
    lo, hi = meta["range"]
    left, right = "(" if meta.get("lo_open") else "[", ")" if meta.get("hi_open") else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def _check_meta(key: str, value: Any, meta) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, meta['choices']))}")
    if "range" in meta:
        lo, hi = meta["range"]
        bad_lo = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
        bad_hi = hi is not None and (value >= hi if meta.get("hi_open") else value > hi)
        if bad_lo or bad_hi:
            raise ConfigError(f"{key}: {value!r} is out of range; allowed {range_text(meta)}")


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            where = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(f"unknown key '{where}'{_nearest(str(name), fields, prefix)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, key)
        else:
            kwargs[name] = _coerce(key, value, tp)
            _check_meta(key, kwargs[name], fields[name].metadata)
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`section.key=value` strings; the value is parsed as YAML (numbers, bools, lists, null)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {path}: '{p}' is not a section")
        node[parts[-1]] = value
    return data


def read_config_file(path: str | Path | None) -> dict:
    """The YAML mapping of a config file (None -> configs/toy.yaml), before overrides and validation."""
    source = Path(path) if path else TOY_CONFIG
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    try:
        return yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, preflight: bool = False
) -> Config:
    """Load a YAML file (None -> configs/toy.yaml), apply overrides, validate every key and rule.

    `preflight` also checks this machine (files exist, optional packages installed), as `fastdapo train` does.
    """
    data = apply_overrides(read_config_file(path), list(overrides or []))
    cfg = _build(Config, data, "")
    errors = check_rules(cfg) + (preflight_errors(cfg) if preflight else [])
    if errors:
        raise ConfigError(errors[0])
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
