# RemoteGPU — two commands matter: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CONSOLE := src/remotegpu/entrypoints/console
CONSOLE_DEPS := $(CONSOLE)/node_modules/.installed

.PHONY: run test install lint-imports image desktop-image bench clean console console-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The web console (Vue 3): npm ci from the committed lockfile, then a Vite build into dist/.
$(CONSOLE_DEPS): $(CONSOLE)/package-lock.json
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

console: $(CONSOLE_DEPS)
	cd $(CONSOLE) && npm run build --silent

console-test: $(CONSOLE_DEPS)
	cd $(CONSOLE) && npm test --silent

# Starts the platform on embedded defaults (SQLite, in-process queue, local agent).
# Environments run in Docker. Without a Docker daemon (and no REMOTEGPU_RUNTIME chosen)
# it says so and starts in the explicit single-user development mode instead.
run: install console
	-@./deploy/images/build-base.sh --if-docker
	$(BIN)/remotegpu migrate
	@if [ -z "$$REMOTEGPU_RUNTIME" ] && ! docker info >/dev/null 2>&1; then \
	    echo "make run: no Docker daemon answers, so environments will be plain processes on this machine," \
	         "running as you, not isolated (REMOTEGPU_RUNTIME=local: single-user development only; user" \
	         "environment variables are refused). Install and start Docker for real environments."; \
	    export REMOTEGPU_RUNTIME=local; \
	fi; exec $(BIN)/remotegpu serve

lint-imports: install
	$(BIN)/lint-imports

# The browser tests run in their own pytest process: Playwright's sync API leaves an
# event loop behind that breaks the asyncio tests running after it in one process.
test: install lint-imports console-test console
	$(BIN)/pytest -q -p no:cacheprovider --ignore=tests/e2e/console $(PYTEST_ARGS)
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e/console $(PYTEST_ARGS)

# Builds the environment base image locally (debootstrap + docker import, no registry).
image:
	./deploy/images/build-base.sh

# The remote desktop variant (base + Xvfb, XFCE, x11vnc, xterm), FROM the local base.
desktop-image:
	./deploy/images/build-desktop.sh

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
