# Two commands: `make run` (main job on the embedded data) and `make test` (the whole test suite).
# Both create .venv and install what they need on first use. GPU users: create .venv and install
# their own CUDA torch into it first (see README); make then keeps that torch.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hotpose-installed

.PHONY: install run test lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m hotpose.train experiment=quickstart

test: $(STAMP)
	$(PY) -m ruff check hotpose tests scripts
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check hotpose tests scripts
