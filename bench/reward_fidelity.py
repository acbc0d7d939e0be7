"""Reward fidelity on the public math sets: does the reward accept every reference answer?

Each ground truth is rendered the ways models write final answers: an ``Answer:`` line, the same
in ``$...$``, a ``\\boxed{}`` sentence, ``x = ...``, LaTeX respelled (``\\dfrac``, no ``\\left``,
no spaces around operators), decimals as ``\\frac{p}{q}``, simple fractions as decimals and
``a/b``; for plain numbers also a trailing period, thousands commas, units and LaTeX scientific
notation; for Minerva also the full reference solution. All are scored with ``score_batch``; the
agreement figure is the fraction judged correct. Perturbed answers (off by one, a changed digit,
``+1`` appended) measure the false-accept rate.

    python -m bench.reward_fidelity [DATA_DIR] [--json OUT]
"""
from __future__ import annotations

import json
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import click

SETS = ["aime-2024", "amc-2023", "gsm8k-test", "minerva-math"]
_INT_RE = re.compile(r"-?\d+")
_DEC_RE = re.compile(r"-?\d+\.\d+")
_FRAC_RE = re.compile(r"\\d?frac\{(-?\d+)\}\{(\d+)\}")
_SCI_RE = re.compile(r"(-?\d+(?:\.\d+)?)[eE]([-+]?\d+)")


def positive_renderings(gt: str, row: dict) -> list[tuple[str, str]]:
    out = [
        ("answer_line", f"Let me work through it.\nAnswer: {gt}"),
        ("answer_dollar", f"Some reasoning.\n\nAnswer: ${gt}$"),
        ("boxed", f"Putting it together, the answer is $\\boxed{{{gt}}}$."),
    ]
    if _INT_RE.fullmatch(gt):
        out.append(("trailing_period", f"Answer: {gt}."))
        out.append(("units", f"Answer: ${gt}$ units"))
        if abs(int(gt)) >= 1000:
            out.append(("thousands", f"Answer: {int(gt):,}"))
            out.append(("thousands_latex", f"Answer: ${int(gt):,}$".replace(",", "{,}")))
    if _DEC_RE.fullmatch(gt):
        out.append(("trailing_zero", f"Answer: {gt}0"))
        value = Fraction(gt)
        if value.denominator <= 1000:
            sign = "-" if value < 0 else ""
            out.append(("fraction_of_decimal",
                        f"Answer: ${sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}$"))
    sci = _SCI_RE.fullmatch(gt)
    if sci:
        out.append(("sci_latex", f"Answer: ${sci.group(1)} \\times 10^{{{sci.group(2)}}}$"))
    if "=" not in gt and "," not in gt:
        out.append(("assignment", f"Answer: $x = {gt}$"))
    if "\\" in gt:  # the same LaTeX written differently: \dfrac, no sizing commands, no spaces
        variant = gt.replace("\\frac", "\\dfrac").replace("\\left", "").replace("\\right", "")
        variant = re.sub(r"\s*([{}()\[\]+\-=^_/,])\s*", r"\1", variant)  # keeps "\\lambda k" apart
        out.append(("latex_variant", f"Answer: ${variant}$"))
    frac = _FRAC_RE.fullmatch(gt)
    if frac and int(frac.group(2)) != 0:
        value = Fraction(int(frac.group(1)), int(frac.group(2)))
        den = value.denominator
        while den % 2 == 0:
            den //= 2
        while den % 5 == 0:
            den //= 5
        if den == 1:  # terminating decimal
            out.append(("decimal_of_fraction", f"Answer: {float(value)!r}"))
        out.append(("slash_fraction", f"Answer: {value.numerator}/{value.denominator}"))
    if row.get("solution"):
        out.append(("reference_solution", row["solution"]))
    return out


def perturbed(gt: str) -> str:
    if _INT_RE.fullmatch(gt):
        return str(int(gt) + 1)
    if _DEC_RE.fullmatch(gt):
        last = gt[-1]
        return gt[:-1] + ("1" if last != "1" else "2")
    return gt + "+1"


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(data_dir: Path, num_workers: int | None, timeout_s: float) -> dict:
    from fastdapo.rewards import score_batch, warmup

    warmup(1)
    report = {}
    all_pos = all_ok = all_neg = all_fa = 0
    for name in SETS:
        path = data_dir / f"{name}.jsonl"
        if not path.exists():
            print(f"skip {name}: {path} not found", file=sys.stderr)
            continue
        rows = load_rows(path)
        responses, gts, kinds = [], [], []
        for row in rows:
            gt = row["reward_model"]["ground_truth"].strip()
            for kind, text in positive_renderings(gt, row):
                responses.append(text)
                gts.append(gt)
                kinds.append(kind)
        t0 = time.perf_counter()
        res = score_batch(responses, gts, num_workers=num_workers, timeout_s=timeout_s)
        neg_res = score_batch([f"Answer: {perturbed(r['reward_model']['ground_truth'].strip())}" for r in rows],
                              [r["reward_model"]["ground_truth"] for r in rows],
                              num_workers=num_workers, timeout_s=timeout_s)
        dt = time.perf_counter() - t0
        ok = sum(r.acc for r in res)
        fa = sum(r.acc for r in neg_res)
        by_kind: dict[str, list[int]] = {}
        misses = []
        for kind, gt, r in zip(kinds, gts, res):
            k = by_kind.setdefault(kind, [0, 0])
            k[0] += r.acc
            k[1] += 1
            if not r.acc:
                misses.append({"kind": kind, "ground_truth": gt, "pred": r.pred})
        report[name] = {
            "rows": len(rows), "renderings": len(res), "accepted": ok,
            "agreement": ok / max(1, len(res)),
            "false_accept": fa / max(1, len(rows)),
            "by_kind": {k: v[0] / v[1] for k, v in by_kind.items()},
            "misses": misses, "seconds": round(dt, 2),
        }
        all_pos += len(res)
        all_ok += ok
        all_neg += len(rows)
        all_fa += fa
    report["overall"] = {"renderings": all_pos, "accepted": all_ok,
                         "agreement": all_ok / max(1, all_pos),
                         "false_accept": all_fa / max(1, all_neg)}
    return report


@click.command("reward-fidelity")
@click.argument("data_dir", default="../shared/data", type=click.Path(path_type=Path))
@click.option("--num-workers", type=int, default=None, help="Equivalence worker processes.")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the full report (with every miss) as JSON.")
@click.option("--show-misses", is_flag=True, help="Print every rejected reference rendering.")
def reward_fidelity_command(data_dir: Path, num_workers: int | None, timeout_s: float,
                            json_out: Path | None, show_misses: bool) -> None:
    """Agreement of the DAPO math reward with the reference answers of the public math sets."""
    report = run(data_dir, num_workers, timeout_s)
    print(f"{'set':<14} {'rows':>5} {'renders':>8} {'agreement':>10} {'false-accept':>13} {'sec':>6}")
    for name in SETS:
        if name not in report:
            continue
        r = report[name]
        print(f"{name:<14} {r['rows']:>5} {r['renderings']:>8} {100 * r['agreement']:>9.2f}% "
              f"{100 * r['false_accept']:>12.2f}% {r['seconds']:>6}")
        if show_misses:
            for m in r["misses"]:
                print(f"    miss [{m['kind']}] gt={m['ground_truth']!r} pred={m['pred']!r}")
    o = report["overall"]
    print(f"{'overall':<14} {'':>5} {o['renderings']:>8} {100 * o['agreement']:>9.2f}% "
          f"{100 * o['false_accept']:>12.2f}%")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


main = reward_fidelity_command

if __name__ == "__main__":
    main()
