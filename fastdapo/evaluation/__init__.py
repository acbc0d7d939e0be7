"""Evaluation: avg@n / pass@k / maj@n of a model on a prompt set.

Names are imported lazily so that attaching the ``eval`` command to the CLI stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SampleResult": "metrics",
    "compute_metrics": "metrics",
    "majority_vote": "metrics",
    "pass_at_k_estimate": "metrics",
    "mean_pass_at_k": "metrics",
    "evaluate": "runner",
    "summary_table": "report",
    "print_summary": "report",
    "load_model_for_eval": "cli",
    "eval_command": "cli",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fastdapo.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fastdapo.evaluation' has no attribute {name!r}")
