# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test test-pg test-slow lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed  ## the whole loop on embedded defaults
	$(BIN)/reach demo

test: $(BIN)/.installed  ## the suite (fast default; REACH_TEST_DATABASE_URL selects PostgreSQL)
	$(BIN)/python -m pytest -m "not slow"

test-pg: $(BIN)/.installed  ## the suite on the local PostgreSQL
	REACH_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -m "not slow"

test-slow: $(BIN)/.installed  ## Prefect server + workers integration tests
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]  # 5: none selected

bench: $(BIN)/.installed  ## the audience (issue 4) and journey-tick (issue 5) figures, on PostgreSQL
	REACH_BENCH_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python benchmarks/audience.py
	$(BIN)/python benchmarks/journey_tick.py --contacts 100000 --no-trace --database $(PG_TEST_URL)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
