#!/usr/bin/env bash
# Clean-room check: do the README's commands still install on a bare Debian 12?
#
# Bootstraps a minimal bookworm root (debootstrap --variant=minbase: no
# compiler, no Python, no CUDA toolkit), copies this checkout into it, and
# there runs scripts/install-deps.sh (the Debian packages from the archive as
# it is today, then the Python venv), then configures CMake for the full
# build, so that every find_package (LibTorch with the venv's CUDA toolkit,
# gRPC, Protobuf, Abseil, prometheus-cpp, SQLite, yaml-cpp, OpenSSL, GoogleTest,
# the image codecs, Gloo) must succeed. It catches what a developer's machine
# hides: a package installed long ago at a version the archive no longer has,
# a header that only a system CUDA toolkit provides, a tool that only the
# developer's PATH has.
#
#   scripts/check-fresh-debian.sh [--keep]
#
# Needs root (debootstrap, chroot, mounts) and the network to the configured
# apt mirror and PyPI. The host's apt sources are copied into the root, so it
# sees the same archive a new machine would. pip's cache ($PIP_CACHE_DIR or
# ~/.cache/pip) is shared with the root, so wheels the host already fetched
# are not downloaded again. --keep leaves the root for inspection (its path is
# printed); by default it is removed. Takes a few minutes; `make
# check-fresh-debian` runs it and CI (.ci/run) runs it before the tests.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=0
case "${1:-}" in
  --keep) keep=1 ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac
log() { printf '[check-fresh-debian %s] %s\n' "$(date +%T)" "$*"; }
die() { echo "check-fresh-debian: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot and bind mounts); run it with sudo"
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap (deps.lock)"
  "$root/scripts/install-deps.sh" --debian >/dev/null
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed and scripts/install-deps.sh did not install it"

# The mirror a new machine would use: the first Debian URI of the host's apt
# sources (deb822 or one-line form), else deb.debian.org.
mirror=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | head -1 | awk '{print $2}' || true)
[[ -n $mirror ]] || mirror=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+/debian/?[[:space:]]' \
                               /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $NF}' || true)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/tmp}/clmae-fresh-debian.XXXXXX")
chroot_dir="$work/root"
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  if ((keep)); then
    log "root kept at $chroot_dir"
  elif findmnt -rn -o TARGET | grep -q "^$work/"; then
    # Never delete through a mount that is still there (/dev, /proc, the pip cache).
    echo "check-fresh-debian: $work still has mounts under it; not removing it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounted+=("$2"); }

t0=$(date +%s)
log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$chroot_dir" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
log "bare root in $(( $(date +%s) - t0 )) s: $(du -sh "$chroot_dir" | cut -f1)"

# The host's apt sources (the archive a new machine sees today) and DNS.
rm -f "$chroot_dir/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/*.sources "$chroot_dir/etc/apt/sources.list.d/" 2>/dev/null || true
[[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$chroot_dir/etc/apt/sources.list"
cp -L /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
# ... and the host's network trust: its CA bundle (a proxy's CA may be in it)
# and pip's configuration, which a new machine here would have too.
# Local CAs go where update-ca-certificates (run when apt installs
# ca-certificates in the root) picks them up; the bundle is copied again
# after the Debian packages, before pip needs it.
copy_trust() {
  mkdir -p "$chroot_dir/etc/ssl/certs" "$chroot_dir/usr/local/share/ca-certificates"
  if [[ -d /usr/local/share/ca-certificates ]]; then
    cp -a /usr/local/share/ca-certificates/. "$chroot_dir/usr/local/share/ca-certificates/"
  fi
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$chroot_dir/etc/ssl/certs/ca-certificates.crt"
  fi
  if [[ -f /etc/pip.conf ]]; then cp -L /etc/pip.conf "$chroot_dir/etc/pip.conf"; fi
}
copy_trust
bind /proc "$chroot_dir/proc"
bind /dev "$chroot_dir/dev"
pip_cache=${PIP_CACHE_DIR:-$HOME/.cache/pip}
mkdir -p "$pip_cache"
bind "$pip_cache" "$chroot_dir/root/.cache/pip"

# The checkout as git sees it (tracked and untracked, not ignored): no build
# folders, no venv.
mkdir -p "$chroot_dir/src/clmae"
(cd "$root" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) \
  | tar -C "$chroot_dir/src/clmae" -xf -

# A minimal environment: nothing of the host's PATH or CUDA_HOME; only the
# settings that say how to reach the registries (proxy, index, CA).
pass_env=()
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
            PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_CERT PIP_DEFAULT_TIMEOUT; do
  [[ -n ${!name:-} ]] && pass_env+=("$name=${!name}")
done
in_root() {
  chroot "$chroot_dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 "${pass_env[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "cd /src/clmae && $1"
}
log "scripts/install-deps.sh --debian"
t1=$(date +%s)
in_root "scripts/install-deps.sh --debian" > "$work/install-debian.log" 2>&1 \
  || { tail -20 "$work/install-debian.log" >&2; die "installing the Debian packages of deps.lock failed (log above)"; }
grep '^\[install-deps\]' "$work/install-debian.log" || true
log "Debian packages in $(( $(date +%s) - t1 )) s"

copy_trust
log "scripts/install-deps.sh --python"
t1=$(date +%s)
in_root "scripts/install-deps.sh --python" > "$work/install-python.log" 2>&1 \
  || { tail -20 "$work/install-python.log" >&2; die "installing the Python venv of deps.lock failed (log above)"; }
grep '^\[install-deps\]' "$work/install-python.log" || true
log "Python venv in $(( $(date +%s) - t1 )) s"

[[ ! -e $chroot_dir/usr/local/cuda ]] || die "the root unexpectedly has /usr/local/cuda"
log "cmake configure (full build, no system CUDA toolkit)"
t1=$(date +%s)
in_root "cmake -S . -B build -G Ninja" > "$work/cmake.log" 2>&1 \
  || { grep -A8 -E 'CMake Error' "$work/cmake.log" | head -40 >&2; die "CMake configure failed in the fresh root (errors above)"; }
grep -E 'LibTorch [0-9]|CUDA toolkit from|Found CUDAToolkit|clmae_engine: NCCL' "$work/cmake.log" || true
log "configured in $(( $(date +%s) - t1 )) s"

# nvcc from the venv compiles and links CUDA code in the root.
cat > "$chroot_dir/tmp/probe.cu" <<'EOF'
#include <cstdio>
__global__ void Scale(float* x, float a) { x[threadIdx.x] *= a; }
int main() { std::printf("%p\n", reinterpret_cast<void*>(&Scale)); return 0; }
EOF
in_root ".venv/cuda/bin/nvcc -arch=sm_90 -o /tmp/probe /tmp/probe.cu" > "$work/nvcc.log" 2>&1 \
  || { cat "$work/nvcc.log" >&2; die "the venv's nvcc could not build a CUDA program in the fresh root"; }
log "the venv's nvcc built a CUDA program"
log "PASS: a bare bookworm root installs deps.lock and configures every target ($(( $(date +%s) - t0 )) s)"
