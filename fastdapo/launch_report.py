"""What `fastdapo launch` says when a rank fails: which rank failed first, how, and where its output is.

Read from the records `fastdapo.launch_node` writes (one per rank: pid, status, when it ended, its log).
A status is a return code as Popen gives it: negative for a signal. Without records (the hostfile mode,
whose per-node launchers DeepSpeed's runner starts itself) only the launcher's exit status is known.
"""

from __future__ import annotations

import signal
from pathlib import Path


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def describe_status(status: int | None) -> str:
    """-9 -> 'killed by SIGKILL'; 1 -> 'exit code 1'; None -> reaped by DeepSpeed's stop, status unknown."""
    if status is None:
        return "ended while the launcher stopped it (exit status not seen)"
    return f"killed by {_signal_name(-status)}" if status < 0 else f"exit code {status}"


def describe_launcher_exit(code: int) -> str:
    """A launcher's exit status; DeepSpeed's passes a rank's -N on as 256 - N (247 for SIGKILL)."""
    if 192 <= code <= 255:
        return f"exit status {code}: a rank's status {code - 256}, {describe_status(code - 256)}"
    if 128 < code < 192:
        return f"exit status {code}: {describe_status(128 - code)} (128 + signal)"
    return f"exit status {code}"


def _output(record: dict) -> str:
    log = record.get("log")
    if not log:
        return "its output is this console's (rank 0 writes here)" if record["rank"] == 0 else "its output: above"
    path = Path(log)
    printed = path.exists() and path.stat().st_size > record.get("log_start", 0)
    return f"its output: {log}" if printed else f"it printed nothing (its log: {log})"


def failure_lines(records: list[dict], code: int, nodes: int = 1) -> tuple[list[str], str]:
    """(one line per rank that ended badly, the closing one-line error) for a launcher that exited `code`."""
    where = " on this node" if nodes > 1 else ""
    ended = sorted((r for r in records if r.get("ended") is not None), key=lambda r: r["ended"])
    failed = [r for r in ended if r["status"] != 0]
    if not failed:
        return [], f"a training process failed ({describe_launcher_exit(code)}); the launcher stopped the others"
    first = failed[0]
    how = describe_status(first["status"])
    lines = [f"rank {first['rank']} (pid {first['pid']}) failed first{where}: {how}; {_output(first)}"]
    for r in failed[1:]:
        after = r["ended"] - first["ended"]
        # DeepSpeed's launcher stops the other ranks with SIGTERM (SIGKILL 30 s later); any other end is their own
        stopped = r["status"] in (-signal.SIGTERM, -signal.SIGKILL, None)  # None: reaped during that stop
        what = "stopped by the launcher" if stopped else "a follow-on error"
        lines.append(
            f"rank {r['rank']} (pid {r['pid']}): {describe_status(r['status'])}, {after:.1f} s after rank "
            f"{first['rank']} failed: {what}; {_output(r)}"
        )
    closing = f"rank {first['rank']} failed first{where} ({how}); the launcher stopped the other processes"
    return lines, closing
