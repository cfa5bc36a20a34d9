#!/usr/bin/env bash
# Install fhirgate (pinned by constraints.txt), generate the demo practice on first run, mint a development
# token, print how to connect Claude Desktop / Claude Code / the MCP Inspector, and serve on 127.0.0.1:8765.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e .
exec .venv/bin/fhirgate demo "$@"
