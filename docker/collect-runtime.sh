#!/usr/bin/env bash
# Lays out a runtime image's files under ROOTFS (the builder stage's output,
# copied whole into the runtime stage): the executables into /usr/local/bin,
# each shared library they load (ldd) at its canonical path, and whole
# library trees (--tree DIR, for libraries that are also dlopen()ed, such as
# the PyTorch wheel's torch/lib and NVIDIA libraries) at their own paths, so
# the executables' RUNPATHs resolve unchanged.
#
#   docker/collect-runtime.sh ROOTFS [--tree DIR]... EXECUTABLE...
#
# Libraries of libc6, libgcc-s1, libstdc++6 and zlib1g are left out: the runtime
# stage's Debian base (the same release as the builder) has them.
set -euo pipefail

usage() { echo "usage: $0 ROOTFS [--tree DIR]... EXECUTABLE..." >&2; exit 2; }
(($# >= 2)) || usage
rootfs=$1
shift
trees=()
executables=()
while (($#)); do
  case $1 in
    --tree) (($# >= 2)) || usage; trees+=("$(readlink -f "$2")"); shift 2 ;;
    -*) usage ;;
    *) executables+=("$1"); shift ;;
  esac
done
((${#executables[@]})) || usage

log() { printf '[collect-runtime] %s\n' "$*"; }

for tree in "${trees[@]}"; do
  [[ -d $tree ]] || { echo "collect-runtime: --tree $tree is not a folder" >&2; exit 1; }
  mkdir -p "$rootfs$(dirname "$tree")"
  cp -a "$tree" "$rootfs$tree"
  log "tree $tree ($(du -sh "$tree" | cut -f1))"
done

mkdir -p "$rootfs/usr/local/bin"
for exe in "${executables[@]}"; do
  install -m 0755 "$exe" "$rootfs/usr/local/bin/"
  log "executable $(basename "$exe")"
done

in_tree() {
  local path=$1 tree
  for tree in "${trees[@]}"; do
    [[ $path == "$tree"/* ]] && return 0
  done
  return 1
}

missing=0
declare -A seen=()
libraries=()
for exe in "${executables[@]}"; do
  while read -r name arrow path _; do
    if [[ $arrow == "=>" && $path == "not" ]]; then
      echo "collect-runtime: $exe: $name not found" >&2
      missing=1
      continue
    fi
    [[ $arrow == "=>" && $path == /* ]] || continue
    canonical="$(readlink -f "$(dirname "$path")")/$name"
    [[ -n ${seen[$canonical]:-} ]] && continue
    seen[$canonical]=1
    in_tree "$(readlink -f "$path")" || in_tree "$canonical" || libraries+=("$canonical")
  done < <(ldd "$exe")
done
((missing == 0)) || exit 1

# The owning package of each library, in one dpkg query (it reads every
# package's file list). dpkg knows a file by the path its package installed,
# which on a merged-/usr system may be the /lib alias of /usr/lib.
declare -A owner=()
if ((${#libraries[@]})); then
  queries=()
  for lib in "${libraries[@]}"; do
    real=$(readlink -f "$lib")
    queries+=("$lib" "${lib#/usr}" "$real" "${real#/usr}")
  done
  while IFS= read -r line; do
    package=${line%%: *}
    file=${line#*: }
    owner[$file]=${package%%:*}
  done < <(dpkg -S "${queries[@]}" 2>/dev/null || true)
fi

for lib in "${libraries[@]}"; do
  real=$(readlink -f "$lib")
  package=""
  for key in "$lib" "/usr$lib" "${lib#/usr}" "$real" "${real#/usr}"; do
    [[ -n ${owner[$key]:-} ]] && { package=${owner[$key]}; break; }
  done
  case $package in libc6 | libgcc-s1 | libstdc++6 | zlib1g) continue ;; esac
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  log "library $lib (${package:-no package})"
done
