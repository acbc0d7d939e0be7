"""Rich summary table of an evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _row(name: str, m: dict, pass_k: list[int]) -> list[str]:
    n = m.get("k", 0)
    pct = lambda key: f"{100 * m[key]:.2f}" if key in m else "-"  # noqa: E731
    return [
        name,
        str(m.get("num_problems", 0)),
        str(n),
        pct(f"avg@{n}"),
        *(pct(f"pass@{k}") for k in pass_k),
        pct(f"maj@{n}"),
        f"{m.get('response_length/mean', 0.0):.1f}",
        f"{100 * m.get('response_length/clip_frac', 0.0):.1f}",
    ]


def summary_table(summary: dict, title: str = "evaluation") -> Table:
    n = summary.get("k", 0)  # samples per problem
    pass_k = list(summary.get("pass_k", []))
    table = Table(title=title, title_justify="left", caption_justify="left", show_edge=False)
    # the set name and the counts fold in a narrow terminal; the rates never lose digits
    table.add_column("set", overflow="fold")
    table.add_column("problems", justify="right", overflow="fold")
    table.add_column("n", justify="right", no_wrap=True)
    for name in [f"avg@{n}", *(f"pass@{k}" for k in pass_k), f"maj@{n}"]:
        table.add_column(name, justify="right", no_wrap=True, min_width=max(6, len(name)))
    table.add_column("mean len", justify="right", min_width=4)
    table.add_column("trunc", justify="right", no_wrap=True)
    for src, m in sorted(summary.get("by_source", {}).items()):
        table.add_row(*_row(src, m, pass_k))
    table.add_row(*_row("all", summary, pass_k), style="bold")
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


# pass@k differs from "any of the n correct" for k < n: say which estimate (Chen et al. 2021) it is
PASS_AT_K_NOTE = "rates in %; pass@k: unbiased, mean of 1 - C(n-c,k)/C(n,k) with c of n correct"


def print_summary(summary: dict, title: str = "evaluation", console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(summary, title))
    console.print(PASS_AT_K_NOTE, highlight=False)
