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

# The review pages' front-end packages (wavesurfer.js), from npm by the lockfile, into a git-ignored folder.
UI_DIR   := serve_app/ui
UI_STAMP := $(UI_DIR)/node_modules/.installed

$(UI_STAMP): $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(UI_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
	  echo "Node.js and npm are not installed: the pages under /ui/ need them (Debian: apt-get install nodejs npm)."; \
	  echo "The REST API works without them."; \
	fi

install: $(STAMP) $(UI_STAMP)

# espeak-ng makes the test speech, Chromium runs the browser tests, npm installs the pages'
# packages; each installed when missing (needs root or sudo).
system-deps:
	@need=""; \
	command -v espeak-ng >/dev/null 2>&1 || need="$$need espeak-ng"; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v npm >/dev/null 2>&1 || need="$$need nodejs npm"; \
	if [ -n "$$need" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$need; \
	fi

run: install
	$(PY) -m cluster.local

test: system-deps install
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
	rm -rf data .pytest_cache tests/artifacts
