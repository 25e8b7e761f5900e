# Two commands on a fresh machine: `make serve` and `make test`. Both set up .venv first, serve
# with what serving needs, test with the dev extra (everything, serve's included): a `make test`
# after `make serve` adds the rest, and a `make serve` after `make test` installs nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell sha256sum pyproject.toml | cut -c1-12)
# One stamp per set of extras and pyproject.toml: a changed pyproject.toml installs again.
SERVE_STAMP := $(VENV)/.installed-serve-$(HASH)
DEV_STAMP   := $(VENV)/.installed-dev-$(HASH)
# What `medfn serve` imports: the runtime and the serve extra (uvicorn, the docs assets), and
# pydicom for DICOM scans; `medfn watch` adds tqdm. Not the CDK, moto, schemathesis, the linters.
SERVE_EXTRAS := dicom,serve,watch

.PHONY: serve test setup setup-serve models clean

# What each first install says before it starts; measured on this project's 2-core machine with
# an empty pip cache (README, Quick start).
SAY_SERVE   := setting up $(VENV) with the serving dependencies (first run only, about 30 s)
SAY_DEV     := setting up $(VENV) with the dev dependencies (first run only, about 95 s)
SAY_ADD_DEV := adding the dev dependencies to $(VENV) (first run only, about 85 s)

# $(call install,extras,message): says what it does, makes the venv if missing, installs the extras.
define install
	@echo "$(2)"
	@test -x $(BIN)/python || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip; }
	$(BIN)/pip install --quiet -e '.[$(1)]'
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
endef

$(SERVE_STAMP): pyproject.toml
ifeq (,$(wildcard $(DEV_STAMP)))
	$(call install,$(SERVE_EXTRAS),$(SAY_SERVE))
endif
	@touch $@

$(DEV_STAMP): pyproject.toml
ifeq (,$(wildcard $(SERVE_STAMP)))
	$(call install,dev,$(SAY_DEV))
else
	$(call install,dev,$(SAY_ADD_DEV))
endif
	@touch $@

setup-serve: $(SERVE_STAMP)

setup: $(DEV_STAMP)

serve: setup-serve
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
