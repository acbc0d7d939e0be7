"""One place for everything a step reports: metrics.jsonl, samples.jsonl, TensorBoard / W&B.

The optional sinks are built (and their packages checked) when the RunLog is created, before any
heavy work. `start` then cuts every file back to the step the run continues from, so steps that are
run again after a resume are not recorded twice (a fresh start clears them).
"""

from __future__ import annotations

import json
from pathlib import Path

from fastdapo.observability.metrics import MetricsWriter
from fastdapo.observability.samples import SampleLog
from fastdapo.observability.sinks import build_sinks
from fastdapo.runtime import distributed as D


class RunLog:
    def __init__(self, run_dir: Path, cfg):
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.sinks = build_sinks(cfg, self.run_dir) if D.is_main() else []
        self.metrics_file: MetricsWriter | None = None
        self.sample_log: SampleLog | None = None

    def start(self, resumed_step: int | None) -> RunLog:
        keep_until = resumed_step if resumed_step is not None else -1
        self.metrics_file = MetricsWriter(self.run_dir, truncate_after_step=keep_until)
        self.sample_log = SampleLog(self.run_dir, self.cfg.run.log_samples_every, truncate_after_step=keep_until)
        return self

    def logged(self, step: int, key: str):
        """A value already in metrics.jsonl (e.g. the step-0 evaluation of a resumed run), or None."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("step") == step and key in row:
                return row[key]
        return None

    def metrics(self, metrics: dict) -> None:
        self.metrics_file.write(metrics)
        for s in self.sinks:
            s.metrics(int(metrics.get("step", 0)), metrics)

    def samples(self, step: int, groups) -> None:
        rows = self.sample_log.write(step, groups)
        for s in self.sinks if rows else []:
            s.samples(step, rows)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
