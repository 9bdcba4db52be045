# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fervideo-installed

.PHONY: demo test install lint bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install only when the dependency list changes.
# editable_mode=compat puts the checkout on sys.path (a .pth line) instead of an import hook, so that a
# folder named `fervideo` in the current directory (the clone, seen from its parent) cannot shadow the
# package as an empty namespace package. setuptools calls the mode transitional; `strict` works too.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

# System tools the tests use: Debian's Chromium + ChromeDriver (dashboard end-to-end test) and
# poppler-utils (PDF report rendering). Tests that need them skip with a reason if they are absent.
# PostgreSQL's server binaries (initdb, pg_ctl: Debian's postgresql package) let the store, pipeline and
# batch tests run against a throwaway server as well as SQLite (tests/postgres_server.py).
SYSTEM_TOOLS := chromium chromedriver pdftoppm
system-deps:
	@missing=0; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing=1; \
	if [ $$missing = 1 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver poppler-utils postgresql >/dev/null) \
	  || echo "could not install chromium/poppler-utils/postgresql: the tests that need them will be skipped"; fi

demo: install
	$(BIN)/fervideo process tests/data/single_face.mp4 --subject demo-subject --db sqlite:///demo.sqlite --force
	$(BIN)/fervideo sessions --db sqlite:///demo.sqlite

test: install system-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check fervideo training apps migrations tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/bench_process.py

clean:
	rm -rf $(VENV) demo.sqlite .pytest_cache
