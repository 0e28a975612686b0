# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv vendor clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded,fast,test,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The chat demo names people through a connecting hook (examples/chat_app.py);
# only here, not in config/default.toml. A caller's own WSFAN_APP__HANDLERS wins.
run: export WSFAN_APP__HANDLERS ?= examples.chat_app:app
run: $(STAMP)
	$(PY) run.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The default scenarios (several minutes, heavy) and the table in bench/results/TABLE.md;
# some: make bench SCENARIOS="fanout_redis picows_1k"; a smoke run: BENCH_ARGS=--quick
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[loadtest]'
	$(PY) bench/run.py $(BENCH_ARGS) $(SCENARIOS)

# Browser libraries in static/vendor/ (versions pinned in the script), from npm.
vendor:
	static/vendor/refresh.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests examples run.py bench
	$(VENV)/bin/ruff format --check server tests examples run.py bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache
