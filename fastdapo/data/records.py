"""The unit every prompt source (toy task, parquet, jsonl) produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PromptRecord:
    prompt: str  # text fed to the tokenizer (template / chat template applied)
    prompt_ids: list[int]
    ground_truth: str
    data_source: str = ""
    index: int = 0
    extra: dict = field(default_factory=dict)
    uid: int = -1  # position in the training stream (global across ranks); -1 outside it
