"""The one-command GPU check, runnable from a checkout without installing: python bench/gpu_check.py [--cpu]."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The importable packages live one folder down (bench/fastdapo_bench, kernels/fastdapo_kernels); this folder
# itself must not be first on sys.path.
sys.path[:0] = [str(ROOT), str(ROOT / "kernels"), str(ROOT / "bench")]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from fastdapo_bench.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
