# The two README commands: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced
SAMPLES := .aima-samples
WEB := functions/api/web
# PyTorch's CPU wheel lies on disk on our machines (constraints.txt pins it); PyPI's is a CUDA build
WHEELS := --find-links /opt/wheels

.PHONY: run test lint schemas manifests web screenshots bench clean env services tools test-tools lock

env: $(STAMP)

# Create the virtual environment if missing and sync it to the lock file (reproducible, no resolving).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q "uv==0.13.8"
	@$(BIN)/uv pip sync -q --compile-bytecode -p $(BIN)/python $(WHEELS) requirements.lock
	@$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	@$(BIN)/python -m inference.cpu.assets >/dev/null
	@touch $(STAMP)

# Regenerate the lock after changing dependencies in pyproject.toml, then each image's lock
# (manifests/images/IMAGE.lock: only the group that image runs, within requirements.lock; the
# families and their groups as functions.runtime.spec.IMAGES, models = text, operator = operator).
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q "uv==0.13.8"; }
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --extra speech --extra text --extra ocr --extra vision --extra operator -c constraints.txt $(WHEELS) \
		--python-version 3.11 --generate-hashes -o requirements.lock
	@set -e; for pair in core: speech:speech vision:vision ocr:ocr text:text models:text operator:operator; do \
		image=$${pair%%:*}; extra=$${pair#*:}; \
		echo "manifests/images/$$image.lock"; \
		$(BIN)/uv pip compile -q pyproject.toml $${extra:+--extra $$extra} -c requirements.lock -c constraints.txt $(WHEELS) \
			--python-version 3.11 --generate-hashes -o manifests/images/$$image.lock; \
	done

services:
	@bash scripts/ensure-services.sh

tools:
	@bash scripts/ensure-tools.sh

test-tools: tests/web/oidc/node_modules/.package-lock.json
	@bash scripts/ensure-tools.sh --test

# the OpenID provider the sign-in tests run (tests/web/oidc: node-oidc-provider from its lock file)
tests/web/oidc/node_modules/.package-lock.json: tests/web/oidc/package-lock.json tests/web/oidc/package.json
	@cd tests/web/oidc && npm ci --no-audit --no-fund --loglevel=error

run: env tools
	@$(BIN)/aima analyze --generate-samples $(SAMPLES)

# three workers on two cores (with two, a quarter of the cores' time went waiting on services and
# subprocesses), each taking a whole test file at a time (module fixtures such as a running dev
# stack stay on one worker), the heaviest files first (tests/heaviest.py)
test: env test-tools services lint web
	@$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder --durations=20

lint: env
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(BIN)/lint-imports
	@$(BIN)/python -m events.schemas_export --check
	@$(BIN)/python -m functions.runtime.chart_export --check
	@$(BIN)/python -m functions.api.openapi_export --check

schemas: env
	@$(BIN)/python -m events.schemas_export
	@$(BIN)/python -m functions.runtime.chart_export
	@$(BIN)/python -m functions.api.openapi_export

# the review workspace (docs/web.md): npm packages from its lock file, the API client generated from
# openapi.json, type-checked and built by Vite into $(WEB)/dist, which the gateway serves under /
web: $(WEB)/dist/index.html

$(WEB)/dist/index.html: $(WEB)/package-lock.json $(WEB)/package.json $(WEB)/openapi.json $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json $(shell find $(WEB)/src -type f ! -name schema.d.ts 2>/dev/null)
	@cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null

# docs/screenshots/*.png: the workspace's main pages in Chromium over a freshly analysed case
screenshots: env test-tools web
	@$(BIN)/python -m tests.web.screenshots

# manifests/ rendered from charts/aima with Helm's engine (a test keeps them in step)
manifests: env
	@$(BIN)/python -m tests.deploy.chart

# bytecode is compiled first, as an image build does (the environment may forbid writing it at import)
bench: env tools services
	@$(BIN)/python -m compileall -q aima events functions inference operators
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .aima $(SAMPLES) .mypy_cache .ruff_cache $(WEB)/dist $(WEB)/node_modules
