#!/usr/bin/env bash
# Install the MCP Inspector (its CLI mode drives the gateway's /mcp in the tests) from npm, once, into a cache
# outside the clone keyed by its version; prints the path of its binary.
set -euo pipefail
INSPECTOR=${MCP_INSPECTOR_VERSION:-2.12.0}
dir="${XDG_CACHE_HOME:-$HOME/.cache}/openmaas/npm/mcp-inspector-$INSPECTOR"
if [ ! -x "$dir/node_modules/.bin/mcp-inspector" ]; then
  command -v npm >/dev/null || { echo "npm is required to install the MCP Inspector" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --no-audit --no-fund --loglevel=error --prefix "$dir" "@modelcontextprotocol/inspector@$INSPECTOR" >&2
fi
echo "$dir/node_modules/.bin/mcp-inspector"
