"""Reward fidelity: how often each reward makes the decision of verl's own ``math_dapo.compute_score``.

Every ground truth of the given sets is rendered the ways models answer (``reward_renderings``); each is
judged by verl's own ``math_dapo.compute_score`` of each named release (read out of the released
wheel, see ``verl_math_dapo``) and by the rewards: ``dapo``, ``dapo`` with
``reward_boxed_fallback`` and ``math_verify``. Reported per verl version, per set and per rendering
kind: how often verl accepts, and each reward's agreement with it; differing decisions are grouped by
kind (examples in ``--json``, ``--show-diffs``), and where the verl versions disagree with each other.

    fastdapo bench reward-fidelity [SET_FILE ...] [--verl-version V ...] [--json OUT] [--markdown OUT]

Set files are .parquet or .jsonl in the verl schema; the default is the small copies in
tests/fixtures.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import click

from fastdapo_bench.reward_fidelity_report import markdown_document, print_tables
from fastdapo_bench.reward_renderings import KIND_LABELS, renderings
from fastdapo_bench.verl_math_dapo import (
    NEWEST,
    VerlFetchError,
    VerlMathDapo,
    accepted,
    default_cache_dir,
    resolve_newest,
    verl_math_dapo,
)

_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
DEFAULT_SETS = [_FIXTURES / f"{n}.jsonl" for n in ("aime-2024", "amc-2023", "gsm8k-test-sample", "minerva-math-sample")]
DEFAULT_VERL_VERSIONS = ("0.9.0", NEWEST)
# reward label -> score_batch options
SCORERS: dict[str, dict] = {
    "dapo": {"reward": "dapo"},
    "dapo+reward_boxed_fallback": {"reward": "dapo", "reward_boxed_fallback": True},
    "math_verify": {"reward": "math_verify"},
}


def read_ground_truths(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path, columns=["reward_model"]).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [str(r["reward_model"]["ground_truth"]) for r in rows]


def _frac(k: int, n: int) -> float:
    return k / max(1, n)


def _summary(n: int, accs: dict[str, list[bool]], ref: list[bool | None]) -> dict:
    """verl's acceptance rate, its failures, and each reward's agreement rate, over ``n`` renderings."""
    agree = {name: sum(a == bool(b) and b is not None for a, b in zip(acc, ref)) for name, acc in accs.items()}
    return {
        "accepts": _frac(sum(bool(b) for b in ref), n),
        "errors": sum(b is None for b in ref),
        "agree": {name: _frac(c, n) for name, c in agree.items()},
    }


def _count(report: dict, kind: str, case: dict, accs: dict[str, bool], refs: dict[str, bool | None], keep: int) -> None:
    """Add one rendering to its kind's counts; keep up to ``keep`` examples of each differing decision."""
    per_version = {v: {"accepts": 0, **dict.fromkeys(accs, 0)} for v in refs}
    k = report["kinds"].setdefault(
        kind, {"label": KIND_LABELS.get(kind, kind), "n": 0, "versions_differ": 0, "verl": per_version}
    )
    k["n"] += 1
    if len(set(refs.values())) > 1:
        k["versions_differ"] += 1
        examples = report["version_diffs"].setdefault(kind, [])
        if len(examples) < keep:
            examples.append({**case, **refs})
    for v, ref in refs.items():
        k["verl"][v]["accepts"] += bool(ref)
        for name, acc in accs.items():
            if acc == bool(ref) and ref is not None:
                k["verl"][v][name] += 1
                continue
            d = report["diffs"][v][name].setdefault(kind, {"count": 0, "examples": []})
            d["count"] += 1
            if len(d["examples"]) < keep:
                d["examples"].append({**case, "accepted": acc, "verl_accepted": ref})


def run(
    paths: list[Path],
    refs: list[VerlMathDapo],
    rewards: list[str],
    num_workers: int | None = None,
    timeout_s: float = 5.0,
    max_diffs: int = 20,
) -> dict:
    """The report (see the module docstring): agreement of each reward with each verl version."""
    from fastdapo.rewards import score_batch, warmup

    if "math_verify" in rewards:
        warmup(1)
    versions = [r.version for r in refs]
    report: dict = {
        "verl": {r.version: {"wheel": r.wheel.name, "sha256": r.sha256, "fetched": r.fetched} for r in refs},
        "rewards": rewards,
        "sets": {},
        "kinds": {},
        "diffs": {v: {name: {} for name in rewards} for v in versions},
        "version_diffs": {},
    }
    all_accs: dict[str, list[bool]] = {name: [] for name in rewards}
    all_refs: dict[str, list[bool | None]] = {v: [] for v in versions}
    for path in paths:
        truths = read_ground_truths(path)
        cases = [(kind, text, gt) for gt in truths for kind, text in renderings(gt.strip())]
        responses, gts = [c[1] for c in cases], [c[2] for c in cases]
        row: dict = {"rows": len(truths), "renderings": len(cases), "seconds": {}, "verl": {}}
        accs: dict[str, list[bool]] = {}
        for name in rewards:
            t0 = time.perf_counter()
            res = score_batch(responses, gts, num_workers=num_workers, timeout_s=timeout_s, **SCORERS[name])
            accs[name] = [r.acc for r in res]
            row["seconds"][name] = round(time.perf_counter() - t0, 2)
        decisions = {r.version: [accepted(r.compute_score, t, g) for t, g in zip(responses, gts)] for r in refs}
        for i, (kind, text, gt) in enumerate(cases):
            case = {"set": path.stem, "ground_truth": gt, "response": text[-120:]}
            _count(report, kind, case, {n: a[i] for n, a in accs.items()}, {v: d[i] for v, d in decisions.items()},
                   max_diffs)  # fmt: skip
        row["verl"] = {v: _summary(len(cases), accs, decisions[v]) for v in versions}
        report["sets"][path.stem] = row
        for name in rewards:
            all_accs[name] += accs[name]
        for v in versions:
            all_refs[v] += decisions[v]
    n = sum(len(a) for a in all_refs.values()) // max(1, len(versions))
    report["overall"] = {"renderings": n, "verl": {v: _summary(n, all_accs, all_refs[v]) for v in versions}}
    return report


def _command_line() -> str:
    argv = sys.argv
    rest = argv[argv.index("reward-fidelity") + 1 :] if "reward-fidelity" in argv else argv[1:]
    return shlex.join(["fastdapo", "bench", "reward-fidelity", *rest])


def load_references(versions: tuple[str, ...], cache_dir: Path) -> tuple[list[VerlMathDapo], dict[str, str]]:
    """verl's compute_score per requested version ('newest' resolved), each version once."""
    resolved, notes = [], {}
    for v in versions:
        if v == NEWEST:
            v, offline = resolve_newest(cache_dir)
            notes[v] = (
                f"the newest cached in {cache_dir}, as pip could not list releases" if offline else "newest on PyPI"
            )
            if offline:
                print(f"reward-fidelity: verl {v} is {notes[v]}", file=sys.stderr)
        if v not in resolved:
            resolved.append(v)
    return [verl_math_dapo(v, cache_dir) for v in resolved], notes


@click.command("reward-fidelity")
@click.argument("set_files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--verl-version",
    "verl_versions",
    multiple=True,
    default=DEFAULT_VERL_VERSIONS,
    show_default=True,
    help="verl release whose own math_dapo.compute_score is a reference (repeatable); 'newest' = the newest on PyPI.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where verl wheels are kept (verl-<version>/); default $XDG_CACHE_HOME/fastdapo or ~/.cache/fastdapo.",
)
@click.option("--reward", "rewards", multiple=True, type=click.Choice(list(SCORERS)), help="Rewards to compare [all].")
@click.option("--num-workers", type=int, default=None, help="math-verify worker processes.")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the report as JSON."
)
@click.option("--markdown", "md_out", type=click.Path(path_type=Path), default=None, help="Also write it as markdown.")
@click.option("--max-diffs", type=int, default=20, show_default=True, help="Differing decisions kept per kind.")
@click.option("--show-diffs", is_flag=True, help="Print the kept differing decisions.")
def reward_fidelity_command(
    set_files: tuple[Path, ...],
    verl_versions: tuple[str, ...],
    cache_dir: Path | None,
    rewards: tuple[str, ...],
    num_workers: int | None,
    timeout_s: float,
    json_out: Path | None,
    md_out: Path | None,
    max_diffs: int,
    show_diffs: bool,
) -> None:
    """Agreement of each reward with verl's own math_dapo.compute_score (named releases) on rendered answers."""
    paths = list(set_files) or DEFAULT_SETS
    for p in paths:
        if not p.is_file():
            print(f"reward-fidelity: set file not found: {p}", file=sys.stderr)
            sys.exit(2)
    try:
        refs, notes = load_references(verl_versions, cache_dir or default_cache_dir())
    except VerlFetchError as e:
        print(f"reward-fidelity: {e}", file=sys.stderr)
        sys.exit(1)
    report = run(paths, refs, list(rewards or SCORERS), num_workers, timeout_s, max_diffs)
    report["command"] = _command_line()
    report["sets_files"] = [str(p) for p in paths]
    for v, note in notes.items():
        report["verl"][v]["note"] = note
    print_tables(report, show_diffs)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if md_out:
        md_out.write_text(markdown_document(report))


main = reward_fidelity_command

if __name__ == "__main__":
    main()
