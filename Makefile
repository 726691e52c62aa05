# OncoLens: `make run` starts the demo app, `make test` runs the whole suite.
# Both create the virtual environment and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DB     ?= $(HOME)/.oncolens/oncolens.duckdb
PORT   ?= 8501
PATIENTS ?= 2000

.PHONY: run test install install-dev demo bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch==2.13.0 first: it is a CPU build already on disk; any other pick pulls CUDA (see ../shared/ENVIRONMENT.md).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Demo data is generated once; delete the file (or run `oncolens demo --force`) to rebuild it.
$(DB): | $(VENV)/.installed
	$(BIN)/oncolens demo --patients $(PATIENTS) --db $(DB)

demo: $(DB)

run: $(VENV)/.installed $(DB)
	$(BIN)/oncolens serve --db $(DB) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
