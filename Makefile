# The two commands a user needs on a fresh clone: `make demo` and `make test`.
# Both create .venv with pip when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test dev bench lint clean stop

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/inventory-sync demo

test: install
	$(BIN)/python -m pytest -q

dev: install
	$(BIN)/inventory-sync dev

bench: install
	$(BIN)/inventory-sync bench --movements 1000000 --json bench-1m.json

lint: install
	$(BIN)/ruff check .

stop:
	@test -x $(BIN)/inventory-sync && $(BIN)/inventory-sync db stop || true

clean: stop
	rm -rf .inventory-sync dbt_project/target dbt_project/logs
