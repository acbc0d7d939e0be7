"""report.md, results.csv and the compact console summary of the GPU check."""

from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ["part", "item", "metric", "value", "ok", "detail"]


def write_report(out: Path, results, environment: list[str], titles: dict, elapsed: float, cpu: bool) -> str:
    """Write both files; return the compact summary to print."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow(
                {
                    "part": r.name,
                    "item": "part",
                    "metric": "status",
                    "value": r.status,
                    "ok": str(r.status == "pass"),
                    "detail": f"{r.seconds:.1f} s",
                }
            )
            writer.writerows(r.rows)
    mode = "CPU twin (Triton interpreter, tiny shapes)" if cpu else "GPU"
    lines = [
        f"# GPU check: {mode}",
        "",
        *environment,
        f"Total {elapsed:.0f} s.",
        "",
        "| part | status | s |",
        "|---|---|---|",
    ]
    lines += [f"| {r.name}: {titles[r.name]} | {r.status} | {r.seconds:.1f} |" for r in results]
    for r in results:
        lines += ["", f"## ({r.name}) {titles[r.name]}: {r.status}", "", *r.lines]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    summary = [f"== GPU check ({mode}): {elapsed:.0f} s, report {out / 'report.md'} ==", *environment]
    for r in results:
        summary.append(f"({r.name}) {titles[r.name]}: {r.status.upper()} ({r.seconds:.0f} s)")
        summary += [f"    {s}" for s in r.summary]
        if r.status in ("error", "skipped") and not r.summary:
            summary += [f"    {line[:200]}" for line in r.lines[:2]]
    return "\n".join(summary)
