# trackformer: `make demo` and `make test` work on a fresh machine (they create .venv and install first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install build test test-fast gpu-test demo bench-check lint clean

# The venv, the pinned requirements and an editable install with the compiled extension.
$(STAMP): requirements.txt pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Rebuild the C++ (and, with a CUDA torch and nvcc, CUDA) extension in place.
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# The whole suite on the CPU; Triton kernels run in the interpreter.
test: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# On a CUDA machine: the GPU tests with the compiled kernels.
gpu-test: $(STAMP)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m trackformer demo

# CPU benchmark regression checks (ratios against committed thresholds; see benchmarks/README.md).
bench-check: $(STAMP)
	mkdir -p .benchmarks
	TRITON_INTERPRET=1 $(PY) -m pytest -q benchmarks -o python_files='bench_*.py' -p no:cacheprovider --benchmark-json=.benchmarks/cpu.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build *.egg-info trackformer/*.so .pytest_cache .benchmarks $(STAMP)
