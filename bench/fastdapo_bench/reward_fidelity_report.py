"""Markdown for the reward-fidelity report: the headline (overall agreement per verl version), then per
version the per-set and per-rendering tables and the differing decisions, then where versions disagree."""

from __future__ import annotations

from .machine import machine_info, machine_line


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]


def _name(reward: str) -> str:
    return "`dapo` + `reward_boxed_fallback`" if reward == "dapo+reward_boxed_fallback" else f"`{reward}`"


def headline(report: dict) -> list[str]:
    versions = list(report["verl"])
    o = report["overall"]
    rows = [[_name(r), *(_pct(o["verl"][v]["agree"][r]) for v in versions)] for r in report["rewards"]]
    rows.append(["(verl accepts)", *(_pct(o["verl"][v]["accepts"]) for v in versions)])
    return _table(["agreement with", *(f"verl {v}" for v in versions)], rows)


def version_section(report: dict, v: str, show_diffs: bool) -> list[str]:
    names = report["rewards"]
    agree_heads = [f"{_name(n)} agrees" for n in names]
    sets = [
        [s, r["rows"], r["renderings"], _pct(r["verl"][v]["accepts"]), *(_pct(r["verl"][v]["agree"][n]) for n in names)]
        for s, r in report["sets"].items()
    ]
    o = report["overall"]
    sets.append(
        ["all", "", o["renderings"], _pct(o["verl"][v]["accepts"]), *(_pct(o["verl"][v]["agree"][n]) for n in names)]
    )
    kinds = [
        [k["label"], k["n"], _pct(k["verl"][v]["accepts"] / k["n"]), *(_pct(k["verl"][v][n] / k["n"]) for n in names)]
        for k in report["kinds"].values()
    ]
    out = [f"### verl {v}", ""]
    out += _table(["set", "rows", "renderings", f"verl {v} accepts", *agree_heads], sets) + [""]
    out += _table(["rendering", "count", f"verl {v} accepts", *agree_heads], kinds)
    if o["verl"][v]["errors"]:
        out += [
            "",
            f"verl {v}'s compute_score raised on {o['verl'][v]['errors']} renderings (counted as disagreement).",
        ]
    for n in names:
        diffs = report["diffs"][v][n]
        count = sum(d["count"] for d in diffs.values())
        by_kind = ", ".join(f"{kind} {d['count']}" for kind, d in sorted(diffs.items()))
        out += ["", f"{_name(n)}: {count} decisions differ from verl {v}" + (f": {by_kind}" if by_kind else "")]
        if show_diffs:
            for kind, d in sorted(diffs.items()):
                out += [
                    f"    [{e['set']}/{kind}] gt={e['ground_truth']!r} accepted={e['accepted']} "
                    f"verl={e['verl_accepted']} response=...{e['response']!r}"
                    for e in d["examples"]
                ]
    return out


def versions_section(report: dict) -> list[str]:
    versions = list(report["verl"])
    if len(versions) < 2:
        return []
    rows = [[k["label"], k["n"], k["versions_differ"]] for k in report["kinds"].values() if k["versions_differ"]]
    out = [f"### Where verl {' / '.join(versions)} decide differently", ""]
    if not rows:
        return out + ["Nowhere: every rendering gets the same decision from every version."]
    out += _table(["rendering", "count", "decisions that differ"], rows)
    for kind, examples in report["version_diffs"].items():
        e = examples[0]
        out += ["", f"e.g. {kind}: gt={e['ground_truth']!r}, response=...{e['response']!r}: "
                + ", ".join(f"{v} {'accepts' if e[v] else 'rejects'}" for v in versions)]  # fmt: skip
    return out


def tables_markdown(report: dict, show_diffs: bool = False) -> str:
    out = ["Overall agreement of each reward's decisions with verl's own `math_dapo.compute_score`:", ""]
    out += headline(report)
    for v in report["verl"]:
        out += ["", *version_section(report, v, show_diffs)]
    out += ["", *versions_section(report)]
    return "\n".join(out).rstrip() + "\n"


def print_tables(report: dict, show_diffs: bool) -> None:
    print(tables_markdown(report, show_diffs), end="")


def markdown_document(report: dict) -> str:
    verl = ", ".join(
        f"{v} (`{r['wheel']}`, sha256 `{r['sha256'][:16]}…`, {'downloaded' if r['fetched'] else 'cached'}"
        f"{', ' + r['note'] if r.get('note') else ''})"
        for v, r in report["verl"].items()
    )
    head = [
        "# Reward fidelity: fastdapo's rewards against verl's own `math_dapo.compute_score`",
        "",
        f"Command: `{report.get('command', 'fastdapo bench reward-fidelity')}`  ",
        machine_line(machine_info()) + "  ",
        f"verl: {verl}; `verl/utils/reward_score/math_dapo.py` read out of each released wheel and loaded alone  ",
        f"Sets: {', '.join(f'`{s}`' for s in report.get('sets_files', report['sets']))}",
        "",
        "Each ground truth is rendered the ways models answer; a rendering agrees when the reward accepts exactly "
        "when verl does. Examples of every differing decision kind are in the JSON (`diffs`, `version_diffs`).",
        "",
    ]
    return "\n".join(head) + "\n" + tables_markdown(report)
