# Every target bootstraps its own virtual environment from a clean clone;
# only `python3` (3.11+) is assumed. Dependencies are installed with the
# pinned constraints in constraints.txt so every machine gets the same set.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test lint typecheck docs-check docs pytest demo bench bench-quick soak emulator lock clean

help:
	@echo "make demo   run the whole job on an embedded Connect emulator and SQS server"
	@echo "make test   ruff, mypy --strict, the docs build and the test suite"
	@echo "make docs   serve the docs site (docs/, MkDocs) on http://127.0.0.1:8000"
	@echo "make bench  benchmark suite (writes bench/RESULTS.md, bench/results.json, bench/plots/)"
	@echo "make soak   long chaos soak (several workers, faults, kills)"

DEMO_STAMP := $(VENV)/.installed-demo

venv: $(STAMP)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24.2"

# Everything: the daemon, the demo's SQS server, fleet mode, the dev and bench tools.
$(STAMP): pyproject.toml constraints.txt $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo]'
	@touch $(STAMP) $(DEMO_STAMP)

# Only what `make demo` runs: the daemon and the embedded SQS server (no dev toolchain).
$(DEMO_STAMP): pyproject.toml constraints.txt $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[demo]'
	@touch $(DEMO_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The docs site, every placeholder and link resolved (docs/hooks/figures.py); site/ is ignored.
docs-check: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir site

docs: $(STAMP)
	$(BIN)/mkdocs serve

# Three processes: the suite mostly waits on loopback peers, so it shares two cores well.
pytest: $(STAMP)
	$(BIN)/pytest -n 3

# Without promtool the alert-rule tests are skipped: say so where nobody can miss it.
test: lint typecheck docs-check pytest
	@command -v promtool >/dev/null 2>&1 || printf '\n%s\n%s\n' \
	  "WARNING: promtool is not installed: the alert-rule tests (tests/deploy/test_observability_rules.py) were SKIPPED." \
	  "WARNING: install it (apt-get install prometheus) to run them; .ci/run does."
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || printf '\n%s\n%s\n' \
	  "WARNING: chromium or chromedriver is not installed: the web example's browser test (tests/examples/test_web_browser.py) was SKIPPED." \
	  "WARNING: install them (apt-get install chromium chromium-driver) to run it; .ci/run does."

demo: $(DEMO_STAMP)
	$(BIN)/orchestrator demo

# Every scenario; each one records its own section of bench/results.json and bench/RESULTS.md
# and its plot as it finishes (`python -m bench SCENARIO` runs one, `--help` lists them).
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

soak: $(STAMP)
	$(BIN)/python -m bench.soak

emulator: $(STAMP)
	$(BIN)/orchestrator emulator

# Re-resolve the newest versions allowed by pyproject.toml and pin them.
lock:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet --upgrade "pip>=24.2"
	.lockenv/bin/python -m pip install --quiet -e '.[dev,demo]'
	.lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^contact-orchestrator' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
