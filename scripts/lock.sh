#!/usr/bin/env bash
# Regenerates the app's lock files from what requirements.txt and requirements-dev.txt ask for:
#   requirements.lock       the app's full set (deployments install this), every package at an exact version with
#                           the sha256 of each of its files (pip then refuses anything else: --require-hashes);
#   requirements-dev.lock   the same pins plus the test and lint tools (scripts/setup.sh installs this);
#   requirements-tools.lock the set-up tools (torch, sentence-transformers, the exporters) at the app's versions of
#                           what both share (.venv-tools, built only to make the embedding model's exports).
# For Linux x86_64 and Python 3.11, the platform setup.sh builds. Run after changing either requirements file
# (`make lock`): setup.sh refuses a lock made from other requirements. uv resolves in seconds, from PyPI plus pip's
# find-links folder when the machine has one (here /opt/wheels: the CPU build of torch).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${GRIDBOT_CACHE:-$HOME/.cache/gridbot}"
source scripts/uv.sh
ensure_uv
mapfile -t links < <(uv_find_links)
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --custom-compile-command "make lock" "${links[@]}")

# Each lock starts with the digest of the requirements it was made from: setup.sh and tests/test_dependencies.py
# compare it with the files as they are, so an edit of requirements*.txt without `make lock` is caught.
lock_digest() { cat "$@" | sha256sum | cut -c1-16; }
compile() {  # lock file, the requirements files it is made from (the last is given to uv), more uv options after --
  local lock=$1; shift
  local inputs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do inputs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  "$UV" pip compile "${common[@]}" "$@" "${inputs[-1]}" -o "$lock.new"
  { echo "# made from ${inputs[*]} (sha256 $(lock_digest "${inputs[@]}"))"; cat "$lock.new"; } > "$lock"
  rm "$lock.new"
}
compile requirements.lock requirements.txt
compile requirements-dev.lock requirements.txt requirements-dev.txt -- --constraint requirements.lock
compile requirements-tools.lock requirements.txt requirements-tools.txt -- --constraint requirements.lock
for lock in requirements.lock requirements-dev.lock requirements-tools.lock; do
  echo "==> $lock: $(grep -c '==' "$lock") packages"
done
