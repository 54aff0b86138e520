# Sundial: `make run` starts the stack with a demo job; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/sundial
export RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/

.PHONY: install services run test test-fast lint bench chaos up down clean

$(BIN)/sundial: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/sundial

# The benchmark's peers (APScheduler, Celery, procrastinate): make bench and the tests of its harness.
$(VENV)/.bench: $(BIN)/sundial
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# Start the local PostgreSQL and RabbitMQ if they are not running.
services:
	@bash scripts/ensure-services.sh

run: install services
	@bash scripts/run-local.sh

# Test files run on TEST_PROCESSES processes (each with its own databases and vhost); the
# few tests that change what every test shares (a RabbitMQ alarm) run alone afterwards.
TEST_PROCESSES ?= 3
test: install $(VENV)/.bench services
	$(BIN)/pytest -q -rs -p no:cacheprovider -m "not slow and not serial" -n $(TEST_PROCESSES) --dist loadfile
	$(BIN)/pytest -q -rs -p no:cacheprovider -m "serial and not slow"

test-fast: install
	$(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check services tests bench examples

bench: install $(VENV)/.bench services
	$(BIN)/python -m bench

chaos: install services
	$(BIN)/pytest -q -rs -p no:cacheprovider -m slow tests/chaos tests/e2e

# Docker instead of local servers: PostgreSQL, RabbitMQ, migrate, 2 schedulers, worker, API.
up:
	docker compose up -d --build
	@echo "API and dashboard: http://127.0.0.1:8000  (first key: docker compose run --rm api keys create --name admin --role admin)"

# Stops and removes the containers; the data stays in the named volumes (down -v drops it).
down:
	docker compose down

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
