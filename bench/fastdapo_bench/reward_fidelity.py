"""Reward fidelity: how often each reward function makes the DAPO reference reward's decision.

Every ground truth of the given sets is rendered the ways models answer (below); each rendering is
judged by the reference semantics (verl ``math_dapo.compute_score`` computed with its quirks kept,
the bugs that ``dapo`` fixes included) and by every reward in ``REWARD_FUNCTIONS``. Reported per
set and per rendering kind: how often the reference accepts, and each reward's agreement with it;
the rows where a reward disagrees are grouped by kind (``--show-diffs``, ``--json``).

    python -m fastdapo_bench.reward_fidelity [SET_FILE ...] [--json OUT] [--show-diffs]

Set files are .parquet or .jsonl in the verl schema; the default is the small copies in
tests/fixtures.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import click

_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
DEFAULT_SETS = [_FIXTURES / f"{n}.jsonl" for n in ("aime-2024", "amc-2023", "gsm8k-test-sample", "minerva-math-sample")]
_INT_RE = re.compile(r"-?\d+")
_WORK = "We check the result once more by substituting it back; every condition holds. " * 6


def _factor(n: int) -> tuple[int, int] | None:
    for a in range(2, int(abs(n) ** 0.5) + 1):
        if n % a == 0:
            return a, n // a
    return None


def renderings(gt: str) -> list[tuple[str, str]]:
    """(kind, response) pairs for one ground truth: correct answers written the ways models write
    them, then wrong ones (a wrong number; for integers also unevaluated expressions)."""
    out = [
        ("plain", f"Let me work through it.\nAnswer: {gt}"),
        ("dollar", f"Some reasoning.\n\nAnswer: ${gt}$"),
        ("answer_boxed", f"Answer: \\boxed{{{gt}}}"),
        ("trailing_period", f"Answer: {gt}."),
        ("bold_answer", f"**Answer:** {gt}"),
        ("unit_listed", f"Answer: {gt} units"),
        ("unit_other", f"Answer: {gt} apples"),
        ("far_from_end", f"Answer: {gt}\n{_WORK}"),
        ("boxed_only", f"Putting it together, the answer is $\\boxed{{{gt}}}$."),
    ]
    if _INT_RE.fullmatch(gt):
        n = int(gt)
        out.append(("wrong_number", f"Answer: {n + 1}"))
        ab = _factor(n)
        out.append(("unevaluated", f"Answer: {ab[0]} \\times {ab[1]}" if ab else f"Answer: {n - 1} + 1"))
        out.append(("unevaluated", f"Answer: \\frac{{{2 * n}}}{{2}}"))
    else:
        out.append(("wrong_number", f"Answer: {gt}+1"))
    return out


def reference_decision(response: str, gt: str) -> bool:
    """The reference reward's decision, its bugs kept: the "[INVALID]" sentinel for a missing
    Answer line and the acceptance of an empty prediction for an empty-normalizing ground truth."""
    from fastdapo.rewards.dapo_reward import extract_answer_line
    from fastdapo.rewards.minerva_normalize import normalize_final_answer

    raw = extract_answer_line(response)
    return normalize_final_answer("[INVALID]" if raw is None else raw) == normalize_final_answer(gt)


def read_ground_truths(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path, columns=["reward_model"]).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [str(r["reward_model"]["ground_truth"]) for r in rows]


def run(paths: list[Path], num_workers: int | None, timeout_s: float) -> dict:
    from fastdapo.rewards import REWARD_FUNCTIONS, score_batch, warmup

    warmup(1)
    names = list(REWARD_FUNCTIONS)
    report: dict = {"sets": {}, "kinds": {}, "diffs": {n: [] for n in names}}
    total = {"n": 0, "ref": 0, **{n: 0 for n in names}}
    for path in paths:
        gts, responses, kinds = [], [], []
        truths = read_ground_truths(path)
        for gt in truths:
            for kind, text in renderings(gt.strip()):
                gts.append(gt)
                responses.append(text)
                kinds.append(kind)
        ref = [reference_decision(r, g) for r, g in zip(responses, gts)]
        row = {"rows": len(truths), "renderings": len(gts), "ref_accept": sum(ref) / max(1, len(gts))}
        for name in names:
            t0 = time.perf_counter()
            accs = [
                r.acc for r in score_batch(responses, gts, reward=name, num_workers=num_workers, timeout_s=timeout_s)
            ]
            row[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
            agree = [a == b for a, b in zip(accs, ref)]
            row[name] = sum(agree) / max(1, len(agree))
            total[name] += sum(agree)
            for kind, ok, acc, gt, text in zip(kinds, agree, accs, gts, responses):
                k = report["kinds"].setdefault(kind, {"n": 0, "ref": 0, **{n: 0 for n in names}})
                k[name] += ok
                if not ok:
                    report["diffs"][name].append(
                        {"set": path.stem, "kind": kind, "ground_truth": gt, "response": text[-120:], "accepted": acc}
                    )
        for kind, r in zip(kinds, ref):
            report["kinds"][kind]["n"] += 1
            report["kinds"][kind]["ref"] += r
        total["n"] += len(gts)
        total["ref"] += sum(ref)
        report["sets"][path.stem] = row
    report["overall"] = {
        "renderings": total["n"],
        "ref_accept": total["ref"] / max(1, total["n"]),
        **{n: total[n] / max(1, total["n"]) for n in names},
    }
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def print_tables(report: dict, show_diffs: bool) -> None:
    names = [k for k in report["diffs"]]
    head = "| set | rows | renderings | reference accepts | " + " | ".join(f"`{n}` agrees" for n in names) + " |"
    print(head + "\n|" + "---|" * (4 + len(names)))
    for set_name, r in report["sets"].items():
        print(
            f"| {set_name} | {r['rows']} | {r['renderings']} | {_pct(r['ref_accept'])} | "
            + " | ".join(_pct(r[n]) for n in names)
            + " |"
        )
    o = report["overall"]
    print(f"| all | | {o['renderings']} | {_pct(o['ref_accept'])} | " + " | ".join(_pct(o[n]) for n in names) + " |")
    print("\n| rendering | count | reference accepts | " + " | ".join(f"`{n}` agrees" for n in names) + " |")
    print("|" + "---|" * (3 + len(names)))
    for kind, k in report["kinds"].items():
        print(
            f"| {kind} | {k['n']} | {_pct(k['ref'] / k['n'])} | "
            + " | ".join(_pct(k[n] / k["n"]) for n in names)
            + " |"
        )
    for name in names:
        by_kind: dict[str, int] = {}
        for d in report["diffs"][name]:
            by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + 1
        print(
            f"\n{name}: {len(report['diffs'][name])} decisions differ from the reference"
            + (": " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())) if by_kind else "")
        )
        if show_diffs:
            for d in report["diffs"][name]:
                print(
                    f"    [{d['set']}/{d['kind']}] gt={d['ground_truth']!r} accepted={d['accepted']} "
                    f"response=...{d['response']!r}"
                )


@click.command("reward-fidelity")
@click.argument("set_files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--num-workers", type=int, default=None, help="math-verify worker processes.")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the full report (with every differing decision) as JSON.",
)
@click.option("--show-diffs", is_flag=True, help="Print every decision that differs from the reference.")
def reward_fidelity_command(
    set_files: tuple[Path, ...], num_workers: int | None, timeout_s: float, json_out: Path | None, show_diffs: bool
) -> None:
    """Agreement of each reward function with the DAPO reference reward on rendered answers."""
    paths = list(set_files) or DEFAULT_SETS
    for p in paths:
        if not p.is_file():
            print(f"reward-fidelity: set file not found: {p}", file=sys.stderr)
            sys.exit(2)
    report = run(paths, num_workers, timeout_s)
    print_tables(report, show_diffs)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


main = reward_fidelity_command

if __name__ == "__main__":
    main()
