#!/usr/bin/env bash
# The project's whole check, as CI runs it: lint, types, the architecture's import contracts
# (import-linter, pyproject.toml), then every test (slow and data included).
# Quick local loop: .venv/bin/pytest -m "not slow and not data"
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/pytest "$@"
