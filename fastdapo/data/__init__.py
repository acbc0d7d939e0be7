"""Prompt sets: records, the DAPO template, loading of parquet / jsonl files."""

from fastdapo.data.loader import DatasetError, LoadStats, load_prompts, read_rows
from fastdapo.data.records import PromptRecord
from fastdapo.data.template import DAPO_TEMPLATE, apply_dapo_template

__all__ = [
    "PromptRecord",
    "DatasetError",
    "LoadStats",
    "load_prompts",
    "read_rows",
    "DAPO_TEMPLATE",
    "apply_dapo_template",
]
