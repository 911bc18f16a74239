# Two commands from a fresh clone: `make demo` and `make test` (each installs into .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export PACS_CONFIG ?= $(CURDIR)/config/pacs.yaml
export PYTHONPATH := $(CURDIR)/plugins

.PHONY: install test lint demo airflow airflow-init bench clean constraints stack-test

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@echo "==> installing the pinned dependencies into $(VENV) (the first time: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@set -o pipefail; $(BIN)/pip install --progress-bar off -r requirements.txt -r requirements-dev.txt \
		-c constraints.txt | { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } \
		| sed -u -e 's/^Collecting /    collecting /' -e 's/^Successfully installed .*/    installed/'
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## make test — lint, then every test (DAG integrity, package, end-to-end DAG runs)
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

## Airflow's metadata DB (SQLite under var/airflow) and the catalogue writer's pool
airflow-init: install
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(BIN)/airflow pools set pacs_catalogue 1 "the catalogue's single writer" > /dev/null

## make demo — a small synthetic hospital through every DAG (airflow dags test): intake, lifecycle, recall, fixity, report
demo: airflow-init
	$(BIN)/python -m pacs.demo

## make airflow — the Airflow UI on http://localhost:8080 with the project's DAGs
airflow: airflow-init
	@echo "==> the DAGs start paused: unpause them in the UI, or e.g. '$(BIN)/airflow dags unpause pacs_ingest' (and pacs_lifecycle, pacs_recall, pacs_fixity, pacs_capacity_report)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/airflow standalone

## make stack-test — the production topology natively (PostgreSQL, Redis, moto S3, CeleryExecutor, two workers):
## every DAG through the scheduler over the REST API, the end state checked; stops all it started (stack/)
stack-test: install
	$(BIN)/python -m stack

## make bench — every benchmark (about 40 minutes); figures, never assertions
bench: install
	$(BIN)/python bench/ingest_rate.py
	$(BIN)/python bench/backlog_rss.py
	$(BIN)/python bench/merge_rate.py
	$(BIN)/python bench/lifecycle_rate.py
	$(BIN)/python bench/capacity_report.py
	$(BIN)/python bench/ingest_scale.py
	$(BIN)/python bench/forecast_backtest.py

constraints:
	$(BIN)/pip freeze --exclude-editable | grep -v '^pacs-archive' > constraints.txt

clean:
	rm -rf var
