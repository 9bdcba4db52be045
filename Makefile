# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fervideo-installed

.PHONY: demo test install lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium + ChromeDriver for the dashboard's end-to-end test (skipped with a reason if absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"; }

demo: install
	$(BIN)/fervideo process tests/data/single_face.mp4 --subject demo-subject --db sqlite:///demo.sqlite --force
	$(BIN)/fervideo sessions --db sqlite:///demo.sqlite

test: install browser
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check fervideo training apps migrations tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/bench_process.py

clean:
	rm -rf $(VENV) demo.sqlite .pytest_cache
