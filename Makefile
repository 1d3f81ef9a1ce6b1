# returnsync: `make run` starts the whole system locally, `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
STANDIN_PORT ?= 8081
STANDIN_URL := http://127.0.0.1:$(STANDIN_PORT)
# The stand-in keeps its shops in memory and forgets them when it stops, so on the embedded
# defaults `make run` starts the local database (config's default DATABASE_URL) afresh too.
# A DATABASE_URL you set yourself is never dropped.
DEMO_DATABASE_URL := postgresql://postgres@127.0.0.1:5432/returnsync

.PHONY: run test venv services browser pgbouncer migrate bench chaos lint

# The local mode: the repository's fixed secrets are accepted. Every other way of starting a
# process of ours is production and refuses them (config/settings.py: unsafe_settings).
run test bench chaos: export RETURNSYNC_ENV := local

venv: .venv/.installed

.venv/.installed: requirements.txt
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements.txt
	touch .venv/.installed

# Start the local Redis and Postgres when they are not running (fresh machine, CI).
services:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "Redis or Postgres did not come up" >&2; exit 1

# The ops page's tests (tests/ops) drive Debian's headless Chromium through its chromedriver:
# installed from the distribution when missing, never downloaded by a test at run time.
browser:
	@command -v chromedriver >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# Debian's PgBouncer: the chaos run's workers reach Postgres through it (transaction pooling).
pgbouncer:
	@test -x /usr/sbin/pgbouncer || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null)

migrate: venv services
	$(PY) -m workers.store.migrate $(if $(filter $(DEMO_DATABASE_URL),$(DATABASE_URL)),--recreate,)

# `make run`: every process (Procfile) on the embedded defaults, the stand-in playing Shopify, and
# the demo shop installed through the app's real OAuth flow (the stand-in approves at once; its
# demo app's tokens last two minutes, so refreshes show in the log).
run: export DATABASE_URL ?= $(DEMO_DATABASE_URL)
# A line per task, accepted event and relay round: quiet by default (config/logging.py).
run: export LOG_PER_MESSAGE ?= true
run: export SHOPIFY_ADMIN_URL_TEMPLATE ?= $(STANDIN_URL)/shops/{shop}/admin
run: export SHOPIFY_URL_TEMPLATE ?= $(STANDIN_URL)/shops/{shop}/admin/api/{version}/graphql.json
# The metrics directory (PROMETHEUS_MULTIPROC_DIR, config/prometheus.py) starts empty with the
# processes: files of a previous run's processes would add to this run's counters.
run: migrate
	@$(PY) -m config.prometheus --reset >/dev/null
	@echo
	@echo "  returnsync is starting (Ctrl-C stops everything):"
	@echo "    ingest      http://127.0.0.1:$${INGEST_PORT:-8000}/v1/return-events   (/openapi.json, /readyz)"
	@echo "    flower      http://127.0.0.1:$${FLOWER_PORT:-5555}   (local login: operator / local-flower-password)"
	@echo "    shopify     $(STANDIN_URL)/_standin/shops/acme-nl.myshopify.com/state   (the local stand-in)"
	@echo "    try         $(PY) -m bench.producer 02-created.json"
	@echo
	@.venv/bin/honcho start & honcho=$$!; \
	  $(PY) -m bench.install_demo acme-nl.myshopify.com || { kill $$honcho; exit 1; }; \
	  wait $$honcho

# The suite's processes write their metrics to a directory of this run, not to `make run`'s.
test: venv services browser pgbouncer
	metrics=$$(mktemp -d); PROMETHEUS_MULTIPROC_DIR=$$metrics $(PY) -m pytest -q; status=$$?; \
	  rm -rf $$metrics; exit $$status

# ruff (lint and format) over the whole tree, mypy over the product code (pyproject.toml says which).
lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: venv services
	$(PY) -m bench

chaos: venv services pgbouncer
	$(PY) -m bench.chaos
