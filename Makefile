# The two commands a user needs on a fresh clone: `make demo` and `make test`.
# Both create .venv with pip when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test dev bench lint clean stop browser-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/inventory-sync demo

# Browser tests drive Debian's chromium (no downloaded browser); psql is used by the analyst test.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium postgresql-client; \
	    else echo "chromium/psql missing and not root with apt: those tests will be skipped (reason printed)"; fi; }

test: install browser-deps
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
