# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test ui bench clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(INSTALLED)

install: $(INSTALLED)

demo: install  ## seed realistic data, run the whole chain, print where the results are
	$(BIN)/seedtest-pipeline demo

test: install  ## the test suite, against a real (embedded) PostgreSQL
	$(BIN)/python -m pytest

ui: install  ## Dagster UI + daemon on the local instance: http://127.0.0.1:3000
	$(BIN)/seedtest-pipeline ui

bench: install  ## benchmarks that print their figures (minutes; never part of `make test`)
	$(BIN)/python bench/bench_seed.py
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_irt.py

clean:  ## remove the embedded database and the local Dagster instance's files
	rm -rf .seedtest
