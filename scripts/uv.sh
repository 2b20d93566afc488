# Sourced by scripts/setup.sh and scripts/lock.sh: uv (pinned, fetched once with pip into the set-up cache), and the
# find-links folders of pip's configuration, which uv does not read (here /opt/wheels: the CPU build of torch).
# Needs CACHE set. uv installs a virtualenv in seconds where pip took minutes, from its own cache ($CACHE/uv unless
# UV_CACHE_DIR says otherwise: the same disk as the virtualenvs, so their files are hard links into it, not copies).
UV_VERSION=0.13.8
UV="$CACHE/venvs/uv-$UV_VERSION/bin/uv"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$CACHE/uv}"

ensure_uv() {
  local tools="$CACHE/venvs/uv-$UV_VERSION"
  if [ ! -x "$UV" ]; then
    echo "==> uv $UV_VERSION into $tools (once)"
    rm -rf "$tools"
    # Into a folder of its own, not a virtualenv: uv is one binary, and no ensurepip to run.
    python3.11 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$tools" "uv==$UV_VERSION" \
      2> >(grep -v "^WARNING: Location 'file://" >&2)
  fi
}

uv_find_links() {  # --find-links options for every existing folder pip is configured with
  local dir
  for dir in ${PIP_FIND_LINKS:-$(python3.11 -m pip config get global.find-links 2>/dev/null || true)}; do
    if [ -d "$dir" ]; then printf -- '--find-links\n%s\n' "$dir"; fi
  done
}
