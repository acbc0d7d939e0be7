"""Live view: a rich progress bar with the metrics a DAPO user watches."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fastdapo.runtime import distributed as D

console = Console(stderr=True)
if not console.is_terminal:  # logs to files/CI: don't wrap at 80 columns
    console = Console(stderr=True, width=160)


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level if D.is_main() else logging.WARNING)
    for noisy in ("DeepSpeed", "deepspeed", "transformers", "torch.distributed", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_bar(label: str, enabled: bool) -> Progress:
    """A bar with count, elapsed time, ETA and a free-text `info` field, on the log's console."""
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )


class StepProgress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.enabled = enabled and D.is_main()
        self._progress = progress_bar("DAPO", self.enabled)
        self._task = self._progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def update(self, m: dict) -> None:
        info = (
            f"reward {m['reward/mean']:+.3f}  acc {m['acc/mean']:.3f}  ent {m['entropy/mean']:.3f}  "
            f"len {m['response_length/mean']:.1f}  kept {m['filter/kept_groups_frac']:.2f}"
        )
        if "rollout_corr/kl" in m:  # engine vs trainer: should stay near 0 with a matching engine
            info += f"  |dlogp| {m['rollout_corr/logp_abs_diff_mean']:.3g}  kl {m['rollout_corr/kl']:.2g}"
        if "async/staleness_mean" in m:  # asynchronous rollouts: how old the samples were, who waited
            info += (
                f"  stale {m['async/staleness_mean']:.1f} (dropped {m['async/dropped_stale']:.0f})"
                f"  wait actor {m['async/actor_wait_s']:.1f}s gen {m['async/generator_wait_s']:.1f}s"
            )
        self._progress.update(self._task, advance=1, info=info)
