# trackformer: `make demo` and `make test` work on a fresh machine (they create .venv and install first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# runtime set + editable install with the compiled extension; then the test/lint/benchmark set on top
STAMP     := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install install-dev build test test-fast gpu-test demo bench-check lint package-check clean

# The venv, the pinned runtime requirements and an editable install with the compiled extension.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

# Tests, lint, sdist builder and the benchmark anchors (requirements-dev.txt), resolved with the runtime pins.
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

# Rebuild the C++ (and, with a CUDA torch and nvcc, CUDA) extension in place.
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# The whole suite on the CPU; Triton kernels run in the interpreter.
test: $(DEV_STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(DEV_STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# On a CUDA machine: the GPU tests with the compiled kernels.
gpu-test: $(DEV_STAMP)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m trackformer demo

# CPU benchmark regression checks (ratios against committed thresholds; see benchmarks/README.md).
bench-check: $(DEV_STAMP)
	mkdir -p .benchmarks
	TRITON_INTERPRET=1 $(PY) -m pytest -q benchmarks -o python_files='bench_*.py' -p no:cacheprovider --benchmark-json=.benchmarks/cpu.json

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

# The package as a user gets it: sdist, a wheel built from it, a fresh venv, smoke tests outside the tree.
package-check: $(DEV_STAMP)
	PY=$(PY) bash .ci/package-check

clean:
	rm -rf build dist *.egg-info trackformer/*.so .pytest_cache .benchmarks $(STAMP) $(DEV_STAMP)
