"""Where `fastdapo eval` writes its per-problem results: never over an existing file unless asked."""

from __future__ import annotations

from pathlib import Path

import click


def results_path(out: str | None, data: str, overwrite: bool) -> tuple[Path, str | None]:
    """(path to write, a line to print or None). An existing --out needs --overwrite; without --out the
    default eval-<data>.jsonl is used, or, when it exists, the first free eval-<data>-N.jsonl."""
    if out is not None:
        path = Path(out)
        if path.exists() and not overwrite:
            raise click.ClickException(f"--out {out} already exists; --overwrite replaces it")
        return path, None
    path = Path(f"eval-{Path(data).stem}.jsonl")
    if overwrite or not path.exists():
        return path, None
    n = 2
    while (chosen := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return chosen, f"{path} exists (kept); writing the results to {chosen}"
