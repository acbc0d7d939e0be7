"""run.device names a device this machine must have: a wrong one is a user error, one line."""

import pytest
import torch

from fastdapo.config.load import ConfigError
from fastdapo.runtime.distributed import resolve_device


def test_cuda_without_a_gpu_is_refused_as_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^run.device: 'cuda' but no CUDA device is visible; set run.device=auto"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
