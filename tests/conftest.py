"""Suite-wide environment, set before any test module imports torch, triton or deepspeed:
DeepSpeed on the CPU accelerator, quiet tokenizers, few threads, and (without CUDA) Triton kernels
through the interpreter — Triton fixes interpretation when a function is decorated, so this must
precede every import of the kernels package."""

import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Every process of the suite, this one and those it starts (launcher ranks included), runs under NCCL's device
# rule, emulated: a collective fastdapo calls with a tensor it did not place on the group's device raises.
_NCCL_RULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime", "nccl_rule")
os.environ["FASTDAPO_NCCL_RULE"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_NCCL_RULE, os.environ.get("PYTHONPATH")) if p)
sys.path.insert(0, _NCCL_RULE)

from emulated_nccl import install  # noqa: E402

install()
