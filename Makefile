# meterdata: `make run` brings everything up, `make test` runs the tests. `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/meterdata/v1/*.proto)
GENERATED := meterdata/v1/.generated
TEST_TZ ?= America/New_York
PYTEST_ARGS ?=

.PHONY: help setup protos run test lint format clean report bench
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(GENERATED): $(STAMP) $(PROTOS) meterdata/codegen.py
	$(PY) -m meterdata.codegen
	touch $(GENERATED)

setup: $(STAMP) $(GENERATED) ## create .venv, install pinned dependencies, generate gRPC code

protos: $(STAMP) ## generate Python code, gRPC stubs and .pyi stubs from protos/ (idempotent)
	$(PY) -m meterdata.codegen
	touch $(GENERATED)

run: setup ## start PostgreSQL (embedded unless DATABASE_URL), all services, ingest both meters; Ctrl-C stops
	$(PY) -m meterdata run

report: setup ## regenerate docs/eda/ (README.md + figures) from the database, through the services
	$(PY) -m analytics_service report --out docs/eda

test: setup ## run the test suite against real PostgreSQL and real gRPC servers (TZ=America/New_York)
	TZ=$(TEST_TZ) $(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## remove the virtualenv, generated code, embedded database and caches
	rm -rf $(VENV) .data .pytest_cache .ruff_cache test-artifacts
	rm -f meterdata/v1/*_pb2.py meterdata/v1/*_pb2.pyi meterdata/v1/*_pb2_grpc.py $(GENERATED)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

bench: setup ## benchmarks against same-run references (about 15 min); writes docs/BENCHMARKS.md and docs/benchmarks.json
	$(PY) -m meterdata.bench --size $(or $(BENCH_SIZE),full)
