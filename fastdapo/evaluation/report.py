"""Rich summary table of an evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _row(name: str, m: dict) -> list[str]:
    k = m.get("k", 0)
    pct = lambda key: f"{100 * m[key]:.2f}" if key in m else "-"  # noqa: E731
    return [
        name,
        str(m.get("num_problems", 0)),
        str(k),
        pct(f"avg@{k}"),
        pct(f"pass@{k}"),
        pct(f"maj@{k}"),
        f"{m.get('response_length/mean', 0.0):.1f}",
        f"{100 * m.get('response_length/clip_frac', 0.0):.1f}",
    ]


def summary_table(summary: dict, title: str = "evaluation") -> Table:
    k = summary.get("k", 0)
    table = Table(title=title, title_justify="left")
    for col, justify in [
        ("set", "left"),
        ("problems", "right"),
        ("k", "right"),
        (f"avg@{k} %", "right"),
        (f"pass@{k} %", "right"),
        (f"maj@{k} %", "right"),
        ("mean len", "right"),
        ("truncated %", "right"),
    ]:
        table.add_column(col, justify=justify)
    for src, m in sorted(summary.get("by_source", {}).items()):
        table.add_row(*_row(src, m))
    table.add_row(*_row("all", summary), style="bold")
    cap = [
        f"n={summary.get('n')}",
        f"temperature={summary.get('temperature')}",
        f"top_p={summary.get('top_p')}",
        f"max_new_tokens={summary.get('max_new_tokens')}",
        f"generate {summary.get('time/generate', 0):.1f}s",
        f"score {summary.get('time/score', 0):.1f}s",
    ]
    table.caption = "  ".join(cap)
    return table


def print_summary(summary: dict, title: str = "evaluation", console: Console | None = None) -> None:
    (console or Console()).print(summary_table(summary, title))
