#!/usr/bin/env bash
# The project's whole check, as CI runs it: lint, types, the architecture's import contracts
# (import-linter, pyproject.toml), then every test (slow and data included).
# Quick local loop: .venv/bin/pytest -m "not slow and not data"
# The tests run on two processes (pytest-xdist), a file's tests together on one (its module
# fixtures, such as a trained run, are made once): CI's two cores, and most tests run one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/pytest -n 2 --dist loadfile "$@"
