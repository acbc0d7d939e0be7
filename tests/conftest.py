"""Suite-wide environment, set before any test module imports torch, triton or deepspeed:
DeepSpeed on the CPU accelerator, quiet tokenizers, few threads, and (without CUDA) Triton kernels
through the interpreter — Triton fixes interpretation when a function is decorated, so this must
precede every import of the kernels package."""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The kernels/ folder installs as `fastdapo_kernels`; without an install (a bare checkout), alias it here.
if importlib.util.find_spec("fastdapo_kernels") is None:
    _kernels = Path(__file__).resolve().parents[1] / "kernels"
    _spec = importlib.util.spec_from_file_location(
        "fastdapo_kernels", _kernels / "__init__.py", submodule_search_locations=[str(_kernels)]
    )
    sys.modules["fastdapo_kernels"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fastdapo_kernels"])
