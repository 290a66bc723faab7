# The two commands of a fresh machine: `make deploy` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# e.g. make test PYTEST_ARGS='-m "not integration"'
PYTEST_ARGS ?=
# `make lock` resolves the ingest image's dependencies with this uv, for this Python (the
# minor version of the Dockerfile's base image).
UV_VERSION := 0.13.9
IMAGE_PYTHON := 3.12

.PHONY: deploy destroy test test-unit lint lock smoke status preview

deploy: ## Deploy the dev stack (checks Docker, the pulumi CLI and the host ports first)
	@$(PYTHON) scripts/deploy.py

destroy: ## Remove the dev stack's containers and network; keeps the data volumes and says how to remove them
	@$(PYTHON) scripts/destroy.py

$(VENV)/.installed: requirements.txt requirements-dev.txt ingest_service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

lint: $(VENV)/.installed ## ruff over the whole repository (rules in pyproject.toml)
	$(VENV)/bin/ruff check .

test: lint ## Lint, then run every test layer (those whose prerequisites are missing skip with the reason)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

lock: $(VENV)/.installed ## Re-lock the ingest image's dependencies with hashes, after changing ingest_service/pyproject.toml
	$(PY) -m pip install -q uv==$(UV_VERSION)
	cd ingest_service && ../$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version $(IMAGE_PYTHON) \
		--generate-hashes --custom-compile-command "make lock" --quiet -o requirements.lock

smoke: $(VENV)/.installed ## After a deploy: publish through each tenant and check the rows arrived
	$(PYTHON) scripts/pulumi_env.py $(PY) -m tools.smoke --stack $${STACK:-dev}

status: $(VENV)/.installed ## Per tenant: EMQX rule and action metrics, messages lost, anything disabled
	$(PY) -m tools.status --stack $${STACK:-dev}

preview: $(VENV)/.installed
	$(PYTHON) scripts/pulumi_env.py pulumi preview --diff --stack $${STACK:-dev}
