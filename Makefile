# The two commands of a fresh machine: `make deploy` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# e.g. make test PYTEST_ARGS='-m "not integration"'
PYTEST_ARGS ?=

.PHONY: deploy test test-unit smoke status preview destroy

deploy: ## Deploy the dev stack (checks Docker and the pulumi CLI first)
	@$(PYTHON) scripts/deploy.py

$(VENV)/.installed: requirements.txt requirements-dev.txt ingest_service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

test: $(VENV)/.installed ## Run every test layer (those whose prerequisites are missing skip with the reason)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

smoke: $(VENV)/.installed ## After a deploy: publish through each tenant and check the rows arrived
	$(PY) -m tools.smoke --stack $${STACK:-dev}

status: $(VENV)/.installed ## Per tenant: EMQX rule and action metrics, messages lost, anything disabled
	$(PY) -m tools.status --stack $${STACK:-dev}

preview: $(VENV)/.installed
	pulumi preview --diff --stack $${STACK:-dev}
