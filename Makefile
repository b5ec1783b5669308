# Two commands on a fresh clone:  make demo   |   make test
# Each creates .venv (Python >= 3.11) on first use: the demo installs poserun alone, the tests
# add the test extras; both then compile every numba kernel once (poserun warm-up), so neither
# the first demo nor the first test waits on the compiler.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test lint bench schema

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "make: installing poserun into $(VENV) (first time only)"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(VENV)/bin/poserun warm-up
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "make: installing the test extras (pytest, Playwright, SciPy, pyarrow, psycopg, LiteRT, OpenCV; first time only)"
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/poserun warm-up
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/poserun demo

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -p no:cacheprovider
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -p no:cacheprovider tests/processors \
	    --cov=poserun.processors --cov-report=term --cov-fail-under=90

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-test
	$(PY) bench/startup.py
	$(PY) bench/ingest.py
	$(PY) bench/kernels.py
	$(PY) bench/accuracy.py

schema: $(VENV)/.installed
	$(VENV)/bin/poserun config schema -o config/poserun.schema.json
