# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv vendor clean

$(STAMP): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded,test,dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) run.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/cluster_fanout.py --subscribers 1000 --rates 10,20,50,100,200 --out bench/results/cluster_fanout_1k.json
	$(PY) bench/cluster_fanout.py --subscribers 10000 --rates 1,2,5,10,20 --out bench/results/cluster_fanout_10k.json

# Browser libraries in static/vendor/ (versions pinned in the script), from npm.
vendor:
	static/vendor/refresh.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests run.py
	$(VENV)/bin/ruff format --check server tests run.py
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache
