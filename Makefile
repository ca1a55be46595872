# Two commands on a fresh machine: `make run` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ASSETS := static/vendor/.built
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_WORKERS ?= 2

.PHONY: run test chaos setup assets browser migrate lint format bench clean

setup: $(STAMP) $(ASSETS)

$(STAMP): pyproject.toml
	@test -x $(PY) || { python=$$(scripts/find-python) && "$$python" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(ASSETS): package.json package-lock.json scripts/build_assets.py
	npm ci --no-audit --no-fund --loglevel=error
	$(PY) scripts/build_assets.py
	@touch $(ASSETS)

assets: $(ASSETS)

migrate: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_catalog

# Serves the ASGI app on http://$(HOST):$(PORT) with a Celery worker and beat beside it.
run: migrate
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/honcho -f platform/Procfile.dev start

# Debian's Chromium for the browser tests; Playwright never downloads a browser of its own.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# A full run (no PYTEST_ARGS) also rewrites docs/compatibility.md from the conformance suite's
# results, passed or failed.
test: setup browser
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); status=$$?; \
	  if [ -z "$(PYTEST_ARGS)" ]; then $(PY) scripts/compatibility_matrix.py || status=1; fi; \
	  exit $$status

# The chaos suite alone (tests/chaos, also part of `make test` on PostgreSQL + Redis): faults of
# the platform's own parts under load, one after the other; figures in var/chaos/results.md.
chaos: setup
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { \
	  echo "make chaos needs DATABASE_URL (PostgreSQL) and REDIS_URL"; exit 2; }
	$(PY) -m pytest -p no:xdist tests/chaos $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The gateway against a direct call and LiteLLM Proxy (bench/README.md); not a test. ~6 minutes.
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules static/vendor staticfiles var
