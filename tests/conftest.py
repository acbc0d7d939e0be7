"""Suite-wide environment, set before any test module imports torch, triton or deepspeed:
DeepSpeed on the CPU accelerator, quiet tokenizers, few threads, and (without CUDA) Triton kernels
through the interpreter — Triton fixes interpretation when a function is decorated, so this must
precede every import of the kernels package."""
import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
