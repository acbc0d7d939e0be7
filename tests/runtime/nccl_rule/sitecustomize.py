"""Loaded by Python at start-up when this folder is on PYTHONPATH: the emulated NCCL rule, if asked for."""

import os

if os.environ.get("FASTDAPO_NCCL_RULE") == "1":
    from emulated_nccl import install

    install()
