#!/usr/bin/env bash
# Installs every dependency of clmae at the versions pinned in deps.lock.
# Idempotent: what is already installed at the pinned version is left alone.
#
#   scripts/install-deps.sh            Debian packages + the Python venv
#   scripts/install-deps.sh --python   only the Python venv (LibTorch)
#   scripts/install-deps.sh --debian   only the Debian packages
#   scripts/install-deps.sh --images   only the container tools (kind deb-images)
#
# The venv lives in $CLMAE_VENV (default: .venv in the repository root); CMake
# finds LibTorch through torch.utils.cmake_prefix_path of that venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/deps.lock"
venv="${CLMAE_VENV:-$root/.venv}"
want_deb=1
want_py=1
deb_kind=deb
case "${1:-}" in
  --python) want_deb=0 ;;
  --debian) want_py=0 ;;
  --images) want_py=0; deb_kind=deb-images ;;
  "") ;;
  *) echo "usage: $0 [--python|--debian|--images]" >&2; exit 2 ;;
esac

log() { printf '[install-deps] %s\n' "$*"; }

# Upstream part of a Debian version: no epoch, no Debian revision.
upstream() { local v=${1#*:}; echo "${v%-*}"; }
# The upstream series: the leading major.minor (or major) of the upstream
# version. "3.0.22" -> 3.0, "4.8+really4.7.5" -> 4.8, "20220623.1" -> 20220623.1.
series() { [[ $(upstream "$1") =~ ^[0-9]+(\.[0-9]+)? ]] && echo "${BASH_REMATCH[0]}" || upstream "$1"; }

# Why version $2 of package $1 does not satisfy the lock's tested upstream
# version $3, or nothing when it does: it must be of the same upstream series
# and no older than the tested release. Debian stable ships security fixes as
# new upstream point releases (OpenSSL 3.0.x) and drops the old ones from the
# archive, so an exact pin would break every new machine the day one lands.
unsuitable() {
  local name=$1 have=$2 tested=$3
  if [[ $(series "$have") != "$(series "$tested")" ]]; then
    echo "'$name' $have is upstream series $(series "$have"), but deps.lock was tested with $tested (series $(series "$tested"))"
  elif dpkg --compare-versions "$(upstream "$have")" lt "$tested"; then
    echo "'$name' $have is older than $tested, the version deps.lock was tested with"
  fi
}

install_debian() {
  local pending=() name ver have
  declare -A tested=()
  while read -r kind name ver; do
    [[ $kind == "$deb_kind" ]] || continue
    tested[$name]=$ver
    have=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$name" 2>/dev/null || true)
    if [[ $have == "ii "* && -z $(unsuitable "$name" "${have#*|}" "$ver") ]]; then
      continue
    fi
    pending+=("$name")
  done < <(grep -v '^\s*#' "$lock" | grep -v '^\s*$')
  if ((${#pending[@]} == 0)); then
    log "Debian packages: all present, each in the tested series and no older than deps.lock"
    return
  fi
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  log "Debian packages to install: ${pending[*]}"
  $sudo apt-get update -qq
  local args=() cand why differ=()
  for name in "${pending[@]}"; do
    ver=${tested[$name]}
    cand=$(apt-cache policy "$name" | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then
      echo "install-deps: Debian package '$name' (tested with $ver) is not available from the configured apt sources" >&2
      exit 1
    fi
    why=$(unsuitable "$name" "$cand" "$ver")
    if [[ -n $why ]]; then
      echo "install-deps: refusing to install $why; the archive offers only $cand" >&2
      exit 1
    fi
    [[ $(upstream "$cand") == "$ver" ]] || differ+=("$name $cand (deps.lock: $ver)")
    args+=("$name=$cand")
  done
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${args[@]}"
  local d
  for d in "${differ[@]}"; do log "installed $d"; done
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

# A CUDA toolkit root for CMake inside the venv ($venv/cuda), assembled from
# NVIDIA's PyPI packages that deps.lock pins (nvcc, its crt headers and NVVM,
# CCCL, and the runtime the torch wheel brings), so that a machine without a
# system toolkit (/usr/local/cuda) configures LibTorch's CUDA targets and
# compiles CUDA code. The wheels keep only versioned shared libraries
# (libcudart.so.13); the link names CMake's FindCUDA and FindCUDAToolkit look
# for (libcudart.so) are symlinks here. Rebuilt on every run: it is only links.
assemble_cuda_root() {
  local site cu
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cu=$(ls -d "$site"/nvidia/cu[0-9]* 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z $cu || ! -x $cu/bin/nvcc ]]; then
    log "no CUDA compiler in the venv (deps.lock pins none for this platform): CUDA toolkit root not assembled"
    return
  fi
  local root_dir="$venv/cuda" f base link
  rm -rf "$root_dir"
  mkdir -p "$root_dir/lib64"
  # bin/ holds links to each tool rather than being one link: nvcc finds
  # include/, lib64/ and nvvm/ as <its folder>/.., which must be this root.
  mkdir -p "$root_dir/bin"
  for f in "$cu"/bin/*; do ln -sr "$f" "$root_dir/bin/$(basename "$f")"; done
  ln -sr "$cu/include" "$root_dir/include"
  ln -sr "$cu/nvvm" "$root_dir/nvvm"
  for f in "$cu"/lib/*; do
    base=$(basename "$f")
    ln -sr "$f" "$root_dir/lib64/$base"
    if [[ $base =~ ^(lib[^.]+)\.so\.[0-9.]+$ ]]; then
      link="${BASH_REMATCH[1]}.so"
      [[ -e $root_dir/lib64/$link ]] || ln -s "$base" "$root_dir/lib64/$link"
    fi
  done
  log "CUDA toolkit root for CMake: $root_dir ($("$root_dir/bin/nvcc" --version | grep -o 'release [0-9.]*'))"
}

((want_deb)) && install_debian
if ((want_py)); then
  install_python
  assemble_cuda_root
fi
log "done"
