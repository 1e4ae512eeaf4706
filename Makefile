# Fathom: `make run` starts the platform locally, `make test` runs the whole suite.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-postgres install system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# espeak-ng makes the test speech; installed when missing (needs root or sudo).
system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng; }

run: install
	$(PY) -m cluster.local

test: install system-deps
	$(PY) -m pytest
	$(MAKE) test-postgres

# The API and storage tests again, on PostgreSQL (what multi-node deployments use).
test-postgres: install
	FATHOM_TEST_DATABASE=postgres $(PY) -m pytest tests/test_api_*.py tests/test_queue.py tests/test_rate_limits.py tests/test_uploads.py tests/test_migrations.py \
	  tests/test_hostile_input.py tests/test_security.py::test_a_key_cannot_mint_a_key_that_outlives_it tests/postgres tests/test_registry.py tests/test_evaluation_claims.py tests/test_promotion_gates.py tests/test_evaluations.py tests/test_webhook_outbox.py tests/test_reviews.py

bench: install system-deps
	$(PY) -m pip install --quiet -e '.[test,bench]'
	for b in bench/*.py; do case $$b in */common.py) ;; *) $(PY) $$b || exit 1;; esac; done

clean:
	rm -rf data .pytest_cache
