#!/usr/bin/env bash
# Installs every dependency of clmae at the versions pinned in deps.lock.
# Idempotent: what is already installed at the pinned version is left alone.
#
#   scripts/install-deps.sh            Debian packages + the Python venv
#   scripts/install-deps.sh --python   only the Python venv (LibTorch)
#   scripts/install-deps.sh --debian   only the Debian packages
#
# The venv lives in $CLMAE_VENV (default: .venv in the repository root); CMake
# finds LibTorch through torch.utils.cmake_prefix_path of that venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/deps.lock"
venv="${CLMAE_VENV:-$root/.venv}"
want_deb=1
want_py=1
case "${1:-}" in
  --python) want_deb=0 ;;
  --debian) want_py=0 ;;
  "") ;;
  *) echo "usage: $0 [--python|--debian]" >&2; exit 2 ;;
esac

log() { printf '[install-deps] %s\n' "$*"; }

# Upstream part of a Debian version: no epoch, no Debian revision.
upstream() { local v=${1#*:}; echo "${v%-*}"; }

install_debian() {
  local missing=() name ver have
  while read -r kind name ver; do
    [[ $kind == deb ]] || continue
    have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$name" 2>/dev/null || true)
    if [[ $have == "ii "* ]] && [[ $(upstream "${have#ii  }") == "$ver" || $(upstream "${have##* }") == "$ver" ]]; then
      continue
    fi
    missing+=("$name:$ver")
  done < <(grep -v '^\s*#' "$lock" | grep -v '^\s*$')
  if ((${#missing[@]} == 0)); then
    log "Debian packages: all present at the pinned versions"
    return
  fi
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  log "Debian packages to install: ${missing[*]%%:*}"
  $sudo apt-get update -qq
  local args=() cand
  for entry in "${missing[@]}"; do
    name=${entry%%:*}
    ver=${entry#*:}
    cand=$(apt-cache policy "$name" | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then
      echo "install-deps: Debian package '$name' is not available from the configured sources" >&2
      exit 1
    fi
    if [[ $(upstream "$cand") != "$ver" ]]; then
      echo "install-deps: '$name' is pinned to upstream $ver in deps.lock, but the archive offers $cand" >&2
      exit 1
    fi
    args+=("$name=$cand")
  done
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${args[@]}"
}

install_python() {
  local py="${PYTHON:-python3}"
  if [[ ! -x $venv/bin/python ]]; then
    log "creating venv $venv"
    "$py" -m venv "$venv"
  fi
  local reqs=() name ver have
  while read -r kind name ver; do
    [[ $kind == pypi ]] || continue
    have=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
    [[ $have == "$ver" ]] || reqs+=("$name==$ver")
  done < <(grep -v '^\s*#' "$lock" | grep -v '^\s*$')
  if ((${#reqs[@]} == 0)); then
    log "Python packages: all present at the pinned versions in $venv"
    return
  fi
  log "pip install ${reqs[*]}"
  "$venv/bin/pip" install --disable-pip-version-check -q "${reqs[@]}"
}

((want_deb)) && install_debian
((want_py)) && install_python
log "done"
