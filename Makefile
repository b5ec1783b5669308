# Two commands on a fresh clone:  make demo   |   make test
# Each creates .venv (Python >= 3.11) and installs poserun into it on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test lint bench schema

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/poserun demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -p no:cacheprovider
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -p no:cacheprovider tests/processors \
	    --cov=poserun.processors --cov-report=term --cov-fail-under=90

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) bench/ingest.py
	$(PY) bench/kernels.py
	$(PY) bench/accuracy.py

schema: $(VENV)/.installed
	$(VENV)/bin/poserun config schema -o config/poserun.schema.json
