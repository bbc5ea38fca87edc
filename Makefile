# RoomKit: every target works on a fresh machine with python3, pip and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint format bench demo demo-nats nats clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,nats]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

demo: $(STAMP)
	$(PY) -m roomkit.demo $(DEMO_ARGS)

# The same conversation through the NATS ingress on a nats-server it starts itself.
demo-nats: $(STAMP)
	$(PY) -m roomkit.demo --nats

# A local JetStream server in the foreground, data under .nats/ (Ctrl-C to stop).
nats: $(STAMP)
	mkdir -p .nats
	$(VENV)/bin/nats-server -js -sd .nats -a 127.0.0.1 -p 4222

clean:
	rm -rf $(VENV) .nats .pytest_cache .ruff_cache .mypy_cache
