"""One console stream: fastdapo's log and progress bars only, without the libraries' bars and chatter.

Called by `fastdapo train` before the trainer (and so transformers / DeepSpeed) is imported. Warnings
and errors from the libraries still reach the log; only progress bars and info-level noise go.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import os

_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # downloads, "Fetching N files"
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_libraries() -> None:
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)  # a user who sets one explicitly keeps it
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        pass
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"; also huggingface_hub's
    for name in ("DeepSpeed", "deepspeed", "torch.distributed", "httpx", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _mute_deepspeed_shm_print()


def _mute_deepspeed_shm_print() -> None:
    # DeepSpeed's CPU backend print()s "DeepSpeed ... built successfully" to stdout on every start, after
    # compiling that op silently on the first one (about a minute): say so instead of hanging mutely.
    try:  # by module path: `import deepspeed.comm.torch as m` binds the torch package (deepspeed.comm.torch attr)
        ds_torch = importlib.import_module("deepspeed.comm.torch")
    except Exception:  # DeepSpeed absent or unable to import here: the trainer reports it later
        return
    build = getattr(ds_torch, "build_shm_op", None)
    if build is None or getattr(build, "_fastdapo_quiet", False):
        return

    @functools.wraps(build)
    def quiet_build():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None  # the op speeds up collectives between processes; one process has none to speed up
        from fastdapo.observability.progress import console

        waiting = (
            console.status("starting DeepSpeed (its first start on a machine compiles a CPU op, ~1 min)")
            if os.environ.get("RANK", "0") == "0"
            else contextlib.nullcontext()
        )
        with waiting, contextlib.redirect_stdout(io.StringIO()):
            return build()

    quiet_build._fastdapo_quiet = True
    ds_torch.build_shm_op = quiet_build
