"""Symbolic-equivalence worker process (run as a script by ``fastdapo.rewards.verifier``).

Reads one JSON request per line on stdin: ``{"i": id, "g": gold, "p": pred}`` and answers one JSON
line on stdout: ``{"i": id, "ok": bool, "e": error-or-null}``. It imports nothing from fastdapo, so
it starts fast; the parent enforces the time limit by killing it. Memory is capped so that a
pathological expression fails with MemoryError instead of exhausting the host.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from functools import lru_cache

_MEMORY_LIMIT_BYTES = int(os.environ.get("FASTDAPO_REWARD_WORKER_MEM", str(3 << 30)))


def _limit_memory() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(hard, _MEMORY_LIMIT_BYTES)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except Exception:  # not available on this platform: the parent's timeout still applies
        pass


_TEXT_GROUP_RE = re.compile(r"\\(?:text\w*|math(?:rm|bf|it)|mbox|operatorname)\s*\{[^{}]*\}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")


def _lost_variables(text: str, parsed: list) -> bool:
    """True when the text names variables but the parsed expression has none."""
    exprs = [x for x in parsed if not isinstance(x, str)]
    if not exprs or getattr(exprs[0], "free_symbols", None):
        return False
    bare = _COMMAND_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", text))
    return bool(set(re.findall(r"[A-Za-z]", bare)) - {"e", "i", "E", "I"})


def main() -> None:
    # Keep the protocol channel private: anything printed by libraries goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.disable(logging.CRITICAL)
    _limit_memory()

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    @lru_cache(maxsize=8192)
    def parsed(text: str):
        # Timeouts are enforced by the parent (signal alarms need whole seconds and the main thread).
        out = parse(text, extraction_config=configs, parsing_timeout=None)
        if _lost_variables(text, out):
            # The parser kept only part of the expression (e.g. unknown macros dropped): trusting
            # the number it produced would accept wrong answers. Keep the string forms only.
            out = [x for x in out if isinstance(x, str)]
        return out

    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        ok, err = False, None
        try:
            gold, pred = parsed(req["g"]), parsed(req["p"])
            ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
        except MemoryError:
            err = "memory"
        except Exception as exc:  # parse/verify failure means "not shown equivalent"
            err = type(exc).__name__
        proto.write(json.dumps({"i": req.get("i"), "ok": ok, "e": err}) + "\n")


if __name__ == "__main__":
    main()
