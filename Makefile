# trainflow: every command a developer or CI needs. `make help` lists them.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export TRAINFLOW_HOME ?= $(CURDIR)/.trainflow
export DAGSTER_HOME ?= $(TRAINFLOW_HOME)/dagster
export PYTHONWARNINGS ?= ignore::DeprecationWarning,ignore::UserWarning
FULL_YEAR := 2013-01-01...2013-12-31

.PHONY: help install pipeline land materialize dev status test lint typecheck unit bench-cache wheel lock clean

help:
	@echo "make pipeline   install, land all of 2013, materialize every asset (local profile)"
	@echo "make test       lint, type-check and run the whole test suite (what CI runs)"
	@echo "make dev        serve the Dagster UI on http://127.0.0.1:3000"
	@echo "make status     where the lake, the model, the report and the registry are"
	@echo "make bench-cache  cold run vs warm re-run of the full year (prints timings)"
	@echo "make wheel      build dist/trainflow-*.whl, configs and dbt project bundled (docs/profiles.md)"
	@echo "make lock       re-resolve the locks from pyproject.toml (needs uv): dev+runtime, runtime only (the image)"

install: $(VENV)/.installed

# Installs only from hash-pinned locks; trainflow itself goes in editable, without deps.
$(VENV)/.installed: requirements.lock requirements-bootstrap.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements-bootstrap.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The Dagster instance settings of the profile: SQLite under DAGSTER_HOME (local) or
# PostgreSQL from DAGSTER_PG_* (prod). Copied on every call, so a profile switch takes.
INSTANCE_YAML := $(if $(filter prod,$(TRAINFLOW_PROFILE)),dagster.prod.yaml,dagster.yaml)
.PHONY: instance
instance:
	mkdir -p $(DAGSTER_HOME)
	cp $(INSTANCE_YAML) $(DAGSTER_HOME)/dagster.yaml

land: install
	$(BIN)/trainflow land --all

materialize: install instance
	$(BIN)/dagster asset materialize -m trainflow.definitions --select '*' --partition-range $(FULL_YEAR)

pipeline: land materialize status

status: install
	@$(BIN)/trainflow status

dev: install instance
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

bench-cache: install
	$(BIN)/python benchmarks/cache_rerun.py

# Bundles configs/, dbt_project/ (manifest parsed) and the lock; builds offline, no isolation.
wheel: install
	$(BIN)/python -m trainflow.packaging --out dist

lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -c requirements.lock -o requirements-runtime.lock
	uv pip compile requirements-bootstrap.in --generate-hashes --python-version 3.11 \
	  -o requirements-bootstrap.lock

clean:
	rm -rf $(TRAINFLOW_HOME) dbt_project/target dbt_project/logs
