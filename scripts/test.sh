#!/usr/bin/env bash
# Install fhirgate with its dev dependencies (pinned by constraints.txt) and run the full test suite:
# ruff, mypy --strict, then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
bash scripts/install-clients.sh
.venv/bin/ruff check src tests benchmarks tools
.venv/bin/ruff format --check src tests benchmarks tools
.venv/bin/mypy
.venv/bin/pytest "$@"
