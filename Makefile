# sessionctx: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev lock run run-stack test test-fast bench lint clean

# The venvs install the lock files (every package pinned, with its hashes); requirements*.txt are the lists that
# people edit, and `make lock` turns them into the lock files.
$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --require-hashes -r requirements.lock
	touch $@

# pip refuses editable installs under --require-hashes: the local client (-e ./clients/python in
# requirements-dev.txt) comes second, without dependencies (they are in the lock).
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(PIP) install -q --require-hashes -r requirements-dev.lock
	$(PIP) install -q --no-deps -e ./clients/python
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# The embedded default: SQLite (WAL) and in-process tasks, debug on, on this machine only.
run: install
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py seed_demo --url http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)/ (API: http://$(HOST):$(PORT)/api/docs/) — Ctrl-C stops it."
	DEBUG=true $(PY) manage.py runserver $(HOST):$(PORT)

# The production layout on one machine: gunicorn, the update and webhook workers and beat (Procfile) under honcho,
# against the PostgreSQL and Redis you give (README, "The production layout on one machine"). Ctrl-C stops all four.
# Settings come from the environment and ENV_FILE (honcho's .env, read if it exists), for the check, migrate and
# collectstatic as for the four processes.
ENV_FILE ?= .env
HONCHO = $(VENV)/bin/honcho -e $(ENV_FILE)
run-stack: install
	@$(HONCHO) run sh -c '[ -n "$$DATABASE_URL" ] && [ -n "$$CELERY_BROKER_URL" ]' || { echo "make run-stack needs DATABASE_URL and CELERY_BROKER_URL (and CACHE_URL, SECRET_KEY), in the environment or $(ENV_FILE): see README"; exit 2; }
	$(HONCHO) run $(PY) manage.py migrate --noinput
	$(HONCHO) run $(PY) manage.py collectstatic --noinput -v 0
	BIND=$(HOST):$(PORT) PATH="$(abspath $(VENV))/bin:$$PATH" exec $(HONCHO) -f Procfile start

# The whole suite on SQLite, or on PostgreSQL when DATABASE_URL points at one.
test: install-dev
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq chromium >/dev/null 2>&1; } || echo "chromium not installed: browser tests will be skipped"
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install-dev
	$(PY) -m pytest -m "not browser and not worker and not heavy" $(PYTEST_ARGS)

bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk not installed: load comes from Python threads (client-bound figures)"
	$(PY) bench/run_all.py

# After editing requirements.txt or requirements-dev.txt: pins every package (hashes included) for Python 3.11.
# The client (-e ./clients/python) stays out of the lock: it is installed from the checkout.
UV_COMPILE = $(VENV)/bin/uv pip compile -q --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: install-dev
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(UV_COMPILE) requirements-dev.txt --no-emit-package sessionctx-client -o requirements-dev.lock

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest-db-* staticfiles
