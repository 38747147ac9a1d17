#!/usr/bin/env bash
# Install the real agent clients the end-to-end tests drive (Claude Code, Codex CLI) from npm, once,
# into a cache outside the clone keyed by their versions; prints the folder holding their binaries.
set -euo pipefail
CLAUDE_CODE=${CLAUDE_CODE_VERSION:-2.1.332}
CODEX=${CODEX_VERSION:-0.171.0}
dir="${XDG_CACHE_HOME:-$HOME/.cache}/openmaas/npm/claude-code-$CLAUDE_CODE+codex-$CODEX"
if [ ! -x "$dir/node_modules/.bin/claude" ] || [ ! -x "$dir/node_modules/.bin/codex" ]; then
  command -v npm >/dev/null || { echo "npm is required to install the agent clients" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --no-audit --no-fund --loglevel=error --prefix "$dir" \
    "@anthropic-ai/claude-code@$CLAUDE_CODE" "@openai/codex@$CODEX" >&2
fi
echo "$dir/node_modules/.bin"
