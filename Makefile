# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test ui bench clean

# The locked, hashed versions (the image's, plus the test tools and the build backend), then the
# project itself without resolving anything again: two installs get the same bytes.
$(INSTALLED): pyproject.toml requirements-dev.lock requirements-build.lock
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock -r requirements-build.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
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
	$(BIN)/python bench/bench_attempt.py
	$(BIN)/python bench/bench_irt.py
	$(BIN)/python bench/bench_reports.py setup
	$(BIN)/python bench/bench_reports.py measure
	$(BIN)/python bench/bench_online.py eap
	$(BIN)/python bench/bench_online.py batch
	$(BIN)/python bench/bench_online.py inactivity

clean:  ## remove the embedded database and the local Dagster instance's files
	rm -rf .seedtest

# Hashed lockfiles for deploy/Dockerfile and `make install`. pip-tools runs from a
# throwaway venv under build/, never from the project's: it is not a project dependency.
# Resolved for Linux / CPython 3.11, like the image.
LOCK_TOOLS := build/lock-tools
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: lock image-tag

lock:  ## regenerate requirements*.lock from pyproject.toml (keeps existing pins unless they conflict)
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet pip-tools==7.6.2
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra test --output-file requirements-dev.lock pyproject.toml
	$(PIP_COMPILE) --all-build-deps --only-build-deps --output-file requirements-build.lock pyproject.toml

image-tag:  ## the image tag of the current commit: seedtest-pipeline:<version>-<git short sha>
	@$(PYTHON) deploy/image_tag.py
