# Checks a contributor runs before a change: `make check` (lint, format, types, then the tests).
.PHONY: check lint types test

check: lint types test

lint:
	ruff check .
	ruff format --check .

types:
	mypy

test:
	python -m pytest
