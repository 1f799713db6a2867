# sessionctx: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev run test test-fast bench lint clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# The embedded default: SQLite (WAL) and in-process tasks, debug on, on this machine only.
run: install
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py seed_demo --url http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)/ (API: http://$(HOST):$(PORT)/api/docs/) — Ctrl-C stops it."
	DEBUG=true $(PY) manage.py runserver $(HOST):$(PORT)

# The whole suite on SQLite, or on PostgreSQL when DATABASE_URL points at one.
test: install-dev
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq chromium >/dev/null 2>&1; } || echo "chromium not installed: browser tests will be skipped"
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install-dev
	$(PY) -m pytest -m "not browser and not worker and not heavy" $(PYTEST_ARGS)

bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk not installed: load comes from Python threads (client-bound figures)"
	$(PY) bench/run_all.py

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest-db-* staticfiles
