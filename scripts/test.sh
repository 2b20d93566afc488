#!/usr/bin/env bash
# Lint, then the whole suite against the real Rasa server, Redis, SQLite and PostgreSQL.
# With --fast: the unit tier alone (pytest -m unit), which needs none of them and refuses to reach them.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/pytest -m unit -q "$@"
fi
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgresql://127.0.0.1:5432/test}"
.venv/bin/ruff check .
# Chromium and a CJK font for the console's browser tests (installs once, as root; else says what to run).
scripts/install-browser.sh
.venv/bin/pytest "$@"
