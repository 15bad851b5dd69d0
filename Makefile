# RemoteGPU — two commands matter: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint-imports image bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Starts the platform on embedded defaults (SQLite, in-process queue, local agent).
run: install
	-@./deploy/images/build-base.sh --if-docker
	$(BIN)/remotegpu migrate
	$(BIN)/remotegpu serve

lint-imports: install
	$(BIN)/lint-imports

test: install lint-imports
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Builds the environment base image locally (debootstrap + docker import, no registry).
image:
	./deploy/images/build-base.sh

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
