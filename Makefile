# Two commands on a fresh machine: `make serve` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: serve test setup models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstalls whenever pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

serve: setup
	$(BIN)/medfn serve

# Lint, format check and strict types first: they take seconds, the tests minutes.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Retrain the reference models (needs the `train` extra: PyTorch, CPU build).
models: setup
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m model_store.build.train_all

clean:
	rm -rf $(VENV) .pytest_cache
