PY ?= python3

.PHONY: test lint bench bench-compare ci

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check connectors throttling dlr privacy_hooks engine bench tests
	$(PY) -m mypy
	lint-imports --no-logo

bench:
	$(PY) -m pytest bench/micro -q --benchmark-only --benchmark-autosave

bench-compare:
	$(PY) -m pytest bench/micro -q --benchmark-only --benchmark-autosave --benchmark-compare

ci:
	bash .ci/run
