#!/usr/bin/env bash
# Builds both container images with podman, then starts each once and runs
# `--help` inside:
#
#   scripts/build-images.sh [coordinator] [worker]      (default: both)
#
# The Dockerfiles start FROM ${DEBIAN_IMAGE} (debian:bookworm-slim). Where no
# image registry is reachable, set CLMAE_BASE_IMAGE to a local image, or let
# this script make one: with CLMAE_BASE_IMAGE unset and no
# localhost/clmae-debian:bookworm yet, it bootstraps a minimal bookworm root
# (debootstrap, the host's apt mirror and CA trust, so the builder reaches
# the same registries the host does) and imports it as that image.
# CLMAE_BASE_IMAGE=debian:bookworm-slim uses the registry's image.
#
# Needs root (debootstrap, podman's storage) and podman (deps.lock, kind
# deb-images: scripts/install-deps.sh --images). Prints what it ran and how
# long each step took. A machine that cannot run containers (no user
# namespaces, a refused setrlimit) still builds the images; the step that
# starts them then fails with podman's own message, which is printed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
images=("$@")
((${#images[@]})) || images=(coordinator worker)
for image in "${images[@]}"; do
  [[ $image == coordinator || $image == worker ]] || {
    echo "usage: $0 [coordinator] [worker]" >&2
    exit 2
  }
done
log() { printf '[build-images %s] %s\n' "$(date +%T)" "$*"; }
die() { echo "build-images: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (podman's storage and debootstrap); run it with sudo"
command -v podman >/dev/null || scripts/install-deps.sh --images
command -v podman >/dev/null || die "podman is not installed and scripts/install-deps.sh --images did not install it"

base=${CLMAE_BASE_IMAGE:-localhost/clmae-debian:bookworm}
if [[ -z ${CLMAE_BASE_IMAGE:-} ]] && ! podman image exists "$base"; then
  command -v debootstrap >/dev/null || scripts/install-deps.sh --debian >/dev/null
  work=$(mktemp -d "${TMPDIR:-/tmp}/clmae-base.XXXXXX")
  trap 'rm -rf --one-file-system "$work"' EXIT
  mirror=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+/debian/?$' /etc/apt/sources.list.d/*.sources \
             2>/dev/null | head -1 | awk '{print $2}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  t0=$(date +%s)
  log "debootstrap --variant=minbase bookworm from $mirror (the base image)"
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  # The host's apt sources (security updates included) and its CA trust and
  # pip settings: what a builder on this network needs to reach the
  # registries. Nothing else of the host goes in.
  rm -f "$work/root/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/*.sources "$work/root/etc/apt/sources.list.d/" 2>/dev/null || true
  if [[ -f /etc/apt/sources.list ]]; then cp /etc/apt/sources.list "$work/root/etc/apt/"; fi
  mkdir -p "$work/root/usr/local/share/ca-certificates" "$work/root/etc/ssl/certs"
  if [[ -d /usr/local/share/ca-certificates ]]; then
    cp -a /usr/local/share/ca-certificates/. "$work/root/usr/local/share/ca-certificates/"
  fi
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/"
  fi
  if [[ -f /etc/pip.conf ]]; then cp -L /etc/pip.conf "$work/root/etc/pip.conf"; fi
  rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*
  tar -C "$work/root" -c . | podman import - "$base" > /dev/null
  log "base image $base imported ($(( $(date +%s) - t0 )) s)"
fi

# Settings that say how to reach the registries (a proxy) reach the builder.
build_args=(--build-arg "DEBIAN_IMAGE=$base")
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n ${!name:-} ]] && build_args+=(--build-arg "$name=${!name}")
done

status=0
for image in "${images[@]}"; do
  t0=$(date +%s)
  log "podman build -f docker/$image.Dockerfile -t clmae-$image (base $base)"
  # chroot isolation: RUN steps need no OCI runtime (and no cgroups), so
  # images build on hosts whose cgroup setup crun refuses.
  if ! podman build --isolation=chroot --network=host "${build_args[@]}" -f "docker/$image.Dockerfile" \
      -t "clmae-$image" . > "/tmp/clmae-build-$image.log" 2>&1; then
    tail -30 "/tmp/clmae-build-$image.log" >&2
    die "building clmae-$image failed (log: /tmp/clmae-build-$image.log)"
  fi
  log "clmae-$image built in $(( $(date +%s) - t0 )) s: $(podman image inspect "clmae-$image" \
        --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
  run=(podman run --rm "clmae-$image" --help)
  [[ $image == worker ]] && run=(podman run --rm --entrypoint /usr/local/bin/clmae-train \
                                 "clmae-$image" --help)
  log "${run[*]}"
  # Abseil's --help exits 1 after printing the usage; the usage is the test.
  "${run[@]}" > "/tmp/clmae-run-$image.log" 2>&1 || true
  if grep -q "Flags from" "/tmp/clmae-run-$image.log"; then
    head -3 "/tmp/clmae-run-$image.log"
    continue
  fi
  echo "build-images: starting clmae-$image failed:" >&2
  tail -5 "/tmp/clmae-run-$image.log" >&2
  # Where the container runtime itself is refused (a sandbox that forbids
  # setrlimit, cgroups crun cannot use), the image's own files still show
  # whether its executables start: mounted, and run in a chroot as the
  # image's user.
  mnt=$(podman image mount "clmae-$image")
  exe=/usr/local/bin/clmae-$image
  [[ $image == worker ]] && exe=/usr/local/bin/clmae-train
  log "fallback: chroot --userspec=10001:10001 <image> $exe --help"
  chroot --userspec=10001:10001 "$mnt" "$exe" --help > "/tmp/clmae-run-$image.log" 2>&1 || true
  podman image unmount "clmae-$image" > /dev/null
  if grep -q "Flags from" "/tmp/clmae-run-$image.log"; then
    head -3 "/tmp/clmae-run-$image.log"
    log "clmae-$image: the image's executable starts (outside a container runtime)"
  else
    tail -5 "/tmp/clmae-run-$image.log" >&2
  fi
  status=1
done
exit $status
