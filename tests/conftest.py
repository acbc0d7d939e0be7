"""Suite-wide environment: DeepSpeed on the CPU accelerator, quiet tokenizers, few threads."""
import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
