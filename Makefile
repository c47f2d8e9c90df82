# trainflow: every command a developer or CI needs. `make help` lists them.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export TRAINFLOW_HOME ?= $(CURDIR)/.trainflow
export DAGSTER_HOME ?= $(TRAINFLOW_HOME)/dagster
FULL_YEAR := 2013-01-01...2013-12-31
# The days `make materialize` runs (RANGE=2013-01-01...2013-02-28 for fewer).
RANGE ?= $(FULL_YEAR)
DEV_PORT ?= 3000

.PHONY: help install install-mlp pipeline land materialize dev status test lint typecheck unit bench bench-cache bench-pods wheel lock clean \
	image image-base image-test image-ci

help:
	@echo "make pipeline   install, land all of 2013, materialize every asset (local profile)"
	@echo "make materialize  the days' features over RANGE (default: 2013), the config's experiment, the predictions"
	@echo "make test       lint, type-check and run the whole test suite (what CI runs)"
	@echo "make install-mlp  add the MLP family's torch + pytorch-lightning (pip, CPU build)"
	@echo "make dev        serve the Dagster UI on http://127.0.0.1:3000"
	@echo "make status     where the lake, the model, the report and the registry are"
	@echo "make bench      trainflow vs a plain script and Dagster's floor: cold, warm, new day, scale 10"
	@echo "make bench-cache  cold run vs warm re-run of the full year (prints timings)"
	@echo "make bench-pods   each step's peak memory over the full year against its pod size"
	@echo "make wheel      build dist/trainflow-*.whl, configs and dbt project bundled (docs/profiles.md)"
	@echo "make image      build the container image $(IMAGE) with $(CONTAINER_TOOL) (docs/deploy.md)"
	@echo "make image-test run the image read-only as its non-root user: CLI, definitions, one asset"
	@echo "make image-base a python3.11 base image from Debian packages, for hosts without a registry"
	@echo "make image-ci   what CI runs after the tests: podman if missing, image-base, image, image-test"
	@echo "make lock       re-resolve the locks from pyproject.toml (needs uv): dev+runtime, runtime only (the image)"

install: $(VENV)/.installed

# Installs only from hash-pinned locks; trainflow itself goes in editable, without deps.
$(VENV)/.installed: requirements.lock requirements-bootstrap.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements-bootstrap.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The MLP family (model.family: mlp): pyproject.toml's `torch` extra, installed by pip on top
# of the locked venv and constrained by the lock, so it cannot move a locked package. Not in
# the lock: pip with torch==2.13.0 takes the CPU build, other resolvers pull CUDA wheels.
install-mlp: $(VENV)/.installed-mlp

$(VENV)/.installed-mlp: $(VENV)/.installed pyproject.toml
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["torch"]))' > $(VENV)/mlp-requirements.txt
	$(BIN)/python -m pip freeze --exclude-editable > $(VENV)/installed-constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/installed-constraints.txt -r $(VENV)/mlp-requirements.txt
	$(BIN)/python -c "import torch, pytorch_lightning; print('torch', torch.__version__, 'pytorch-lightning', pytorch_lightning.__version__)"
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

# `dg launch` runs what `dagster asset materialize -m trainflow.definitions --select` runs,
# without the latter's notice that dg supersedes it (docs/runbook.md). Three runs: the days'
# features over RANGE, the training side for the config's experiment partition (which
# `trainflow experiments add` stores and adds first), then the days' predictions, scored
# by the champion that run may have registered (docs/experiments.md).
FEATURES_SIDE := not (group:training or group:evaluation or group:predictions)
TRAINING_SIDE := group:training or group:evaluation
SCORING_SIDE := group:predictions
EXPERIMENT_CONFIG ?= $(or $(TRAINFLOW_CONFIG),configs/experiment.yaml)
materialize: install instance
	$(BIN)/dg launch --assets '$(FEATURES_SIDE)' --partition-range $(RANGE) -c configs/run/terminal.yaml
	name=$$($(BIN)/trainflow experiments add --quiet $(EXPERIMENT_CONFIG)) && \
		$(BIN)/dg launch --assets '$(TRAINING_SIDE)' --partition "$$name" -c configs/run/terminal.yaml
	$(BIN)/dg launch --assets '$(SCORING_SIDE)' --partition-range $(RANGE) -c configs/run/terminal.yaml

pipeline: land materialize status

status: install
	@$(BIN)/trainflow status

# workspace.yaml: the location runs on this venv's python, whatever VENV names.
dev: install instance
	$(BIN)/dg dev -w workspace.yaml -h 127.0.0.1 -p $(DEV_PORT)

lint: install
	$(BIN)/ruff check src tests benchmarks deploy
	$(BIN)/ruff format --check src tests benchmarks deploy

typecheck: install
	$(BIN)/mypy

# Test files are spread over TEST_WORKERS processes (pytest-xdist, one file per worker at a
# time: module fixtures are built once). The dbt manifest is parsed first, so workers that
# load the definitions at the same moment never parse it side by side.
TEST_WORKERS ?= 2
unit: install
	$(BIN)/python -c "from trainflow.defs.dbt import ensure_manifest; ensure_manifest()"
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test: lint typecheck unit

# About 13 minutes on 2 cores; BENCH_ARGS="--repeat 1 --scales 10,100" for other runs.
bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-cache: install
	$(BIN)/python benchmarks/cache_rerun.py

# Each step's peak memory over all of 2013 against its pod size (src/trainflow/defs/pods.py).
bench-pods: install
	$(BIN)/python benchmarks/step_memory.py

# Bundles configs/, dbt_project/ (manifest parsed) and the lock; builds offline, no isolation.
wheel: install
	$(BIN)/python -m trainflow.packaging --out dist

# The dev lock keeps the bootstrap's setuptools (dagster-dg-cli's tools depend on setuptools):
# one setuptools builds trainflow and stays in the venv.
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -c requirements-bootstrap.in -o requirements.lock
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -c requirements.lock -o requirements-runtime.lock
	uv pip compile requirements-bootstrap.in --generate-hashes --python-version 3.11 \
	  -o requirements-bootstrap.lock

# The container image (Dockerfile, docs/deploy.md). A dirty tree bakes no commit: the
# image's code would not be that commit's. CONTAINERS_CONF=deploy/image/containers.conf
# selects runc and fixed ulimits where podman's defaults fail (a nested container).
CONTAINER_TOOL ?= podman
IMAGE ?= trainflow:dev
BASE_IMAGE ?= docker.io/library/python:3.11-slim-bookworm
DEBIAN_BASE_IMAGE ?= localhost/trainflow-base:bookworm
WITH_TORCH ?= 0
TORCH_INDEX_URL ?=
# A PEM bundle the builder stage must trust to reach the package index (a TLS proxy).
EXTRA_CA ?=
IMAGE_BUILD_FLAGS ?=
GIT_COMMIT ?= $(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . || git rev-parse HEAD 2>/dev/null)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

image:
	@if [ -z "$(GIT_COMMIT)" ]; then echo "image: uncommitted changes (dirty tree): no commit is baked into $(IMAGE)"; fi
	@if [ -n "$(EXTRA_CA)" ]; then cp "$(EXTRA_CA)" deploy/image/extra-ca/extra.crt; fi
	@start=$$(date +%s); \
	$(CONTAINER_TOOL) build $(IMAGE_BUILD_FLAGS) -t $(IMAGE) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg GIT_COMMIT=$(GIT_COMMIT) \
	  --build-arg VERSION=$(VERSION) --build-arg WITH_TORCH=$(WITH_TORCH) \
	  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) . \
	  && echo "image: built $(IMAGE) in $$(( $$(date +%s) - start )) s"

image-base:
	CONTAINER_TOOL=$(CONTAINER_TOOL) BASE_TAG=$(DEBIAN_BASE_IMAGE) deploy/image/debian-base.sh

image-test:
	CONTAINER_TOOL=$(CONTAINER_TOOL) EXPECT_COMMIT=$(GIT_COMMIT) deploy/image/image-test.sh $(IMAGE)

# What .ci/run does after the tests: podman from Debian if missing, a Debian base, the image,
# image-test (about 5 minutes).
image-ci:
	deploy/image/ci.sh

clean:
	rm -rf $(TRAINFLOW_HOME) dbt_project/target dbt_project/logs
