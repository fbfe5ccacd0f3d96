# Every task of the template, for people and for CI alike (CI workflows only call these targets).
# `make help` lists them. The first target that needs Python creates .venv and installs the pins.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
CLI := python -m mlops_template
BASELINE ?=

.PHONY: help setup data pipeline run metrics gate plots lint format test test-fast bench-pipeline clean \
	image image-test bench-serve serve predict

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found; install it or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r requirements-dev.txt -e .
	@touch $@

setup: $(STAMP) ## create .venv and install the pinned dependencies (every other target does this first)

data: $(STAMP) ## get the raw data: `dvc pull` if a DVC remote is configured, else the embedded sample
	@if [ -n "$$(dvc remote list)" ]; then dvc pull data.dvc; else $(CLI) sample --if-missing; fi

pipeline: data ## run the DVC pipeline (prep -> train -> evaluate -> gate); a no-op when nothing changed
	dvc repro

run: pipeline ## the main job: set up, data, pipeline, metrics, then serve the API on $PORT (Ctrl-C stops)
	@$(CLI) metrics
	@echo "serving the model on http://localhost:$${PORT:-8000} (try /docs); Ctrl-C stops it"
	$(CLI) serve

metrics: $(STAMP) ## print the latest metrics table
	@$(CLI) metrics

gate: $(STAMP) ## re-judge the metrics; BASELINE=main (git ref) or BASELINE=path/to/metrics.json
	$(CLI) gate $(if $(BASELINE),--baseline $(BASELINE))

plots: $(STAMP) ## render the DVC plots to reports/plots-html/index.html (REV=main compares)
	dvc plots $(if $(REV),diff $(REV),show) --out reports/plots-html

lint: $(STAMP) ## ruff lint and format check
	ruff check src tests tools
	ruff format --check src tests tools

format: $(STAMP) ## apply ruff fixes and formatting
	ruff check --fix src tests tools
	ruff format src tests tools

test: lint ## lint + the whole test suite, JUnit (reports/junit.xml) and coverage (fails under 85%)
	@mkdir -p reports
	pytest --junitxml=reports/junit.xml --cov --cov-report=term --cov-report=xml:reports/coverage.xml

test-fast: $(STAMP) ## unit tests only (no DVC, no servers)
	pytest tests/unit -q

bench-pipeline: $(STAMP) ## time prep/train/evaluate at 10k, 100k and 1M rows -> reports/bench-pipeline.json
	$(CLI) bench-pipeline

# ---- Serving: the prediction API and batch scoring (README "Serving the model") ----
serve: $(STAMP) ## serve the gated bundle with uvicorn (env: MODEL_DIR, PORT, WEB_CONCURRENCY, MAX_BATCH_ROWS...)
	$(CLI) serve

predict: $(STAMP) ## batch-score a CSV: make predict INPUT=in.csv OUTPUT=out.csv [REJECTS=rejects.csv]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make predict INPUT=in.csv OUTPUT=out.csv [REJECTS=rejects.csv]" >&2; exit 2; }
	$(CLI) predict --input "$(INPUT)" --output "$(OUTPUT)" $(if $(REJECTS),--rejects "$(REJECTS)")

# ---- Runtime: the container image and the service benchmark (scripts in tools/, shared by CI and people) ----
CONTAINER_ENGINE ?= docker
IMAGE ?= mlops-template-serving:local
IMAGE_BUILD_FLAGS ?=

image: pipeline ## build the serving image from the gated bundle (refused unless VALIDATED); CONTAINER_ENGINE=docker
	python tools/image_test.py --build-only --engine "$(CONTAINER_ENGINE)" --image $(IMAGE) --build-flags "$(IMAGE_BUILD_FLAGS)"

image-test: pipeline ## build and run the image: /ready, /predict, HEALTHCHECK, non-root, size -> reports/image.json
	python tools/image_test.py --engine "$(CONTAINER_ENGINE)" --image $(IMAGE) --build-flags "$(IMAGE_BUILD_FLAGS)"

bench-serve: pipeline ## /predict vs bare FastAPI, mlflow serve, pandas baseline (wrk) -> reports/bench-serve.json
	python tools/bench_serve.py

clean: ## remove pipeline outputs and caches (keeps .venv and data/)
	rm -rf artifacts reports/junit.xml reports/coverage.xml .pytest_cache .ruff_cache .coverage .coverage.*
