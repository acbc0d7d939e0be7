"""Sample generations: a few prompts with their responses, rewards and correctness, every
`run.log_samples_every` steps, appended to RUN_DIR/samples.jsonl (one JSON object per response).

Each process only sees its own share of the groups; rank 0 logs the first `max_groups` of its share.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastdapo.runtime import distributed as D

MAX_GROUPS = 4


def sample_rows(step: int, groups, max_groups: int = MAX_GROUPS) -> list[dict]:
    rows = []
    for gi, grp in enumerate(groups[:max_groups]):
        for g, score, acc in zip(grp.generations, grp.scores, grp.accs):
            rows.append(
                {
                    "step": step,
                    "group": gi,
                    "prompt": grp.prompt.prompt,
                    "response": g.text,
                    "ground_truth": grp.prompt.ground_truth,
                    "reward": float(score),
                    "acc": bool(acc),
                    "response_length": len(g.response_ids),
                    "truncated": bool(g.truncated),
                    "informative": bool(grp.informative),
                }
            )
    return rows


def truncate_jsonl(path: Path, after_step: int) -> None:
    """Drop every line whose step is past `after_step` (a resumed run re-runs those steps)."""
    if not path.exists():
        return
    keep = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= after_step
    ]
    path.write_text("".join(k + "\n" for k in keep))


class SampleLog:
    def __init__(self, run_dir: Path, every: int, truncate_after_step: int | None = None):
        self.path = Path(run_dir) / "samples.jsonl"
        self.every = every
        if D.is_main() and truncate_after_step is not None:
            truncate_jsonl(self.path, truncate_after_step)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def write(self, step: int, groups) -> list[dict]:
        if not D.is_main() or not self.due(step):
            return []
        rows = sample_rows(step, groups)
        with self.path.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        return rows
