#!/usr/bin/env bash
# Stages what the engine-only build needs beyond LibTorch, for a GPU machine
# that has only CUDA, CMake, a compiler and PyTorch: a copy of this machine's
# Abseil (Debian's libabsl-dev: headers, shared libraries, CMake package),
# Gloo's headers and TurboJPEG under .deps/absl, laid out as an install prefix. scripts/gpu-check.sh uses it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.deps/absl"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
src_lib="/usr/lib/$multiarch"
[[ -d /usr/include/absl && -d $src_lib/cmake/absl ]] || {
  echo "stage-gpu-deps: Abseil is not installed here (run scripts/install-deps.sh)" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/lib/$multiarch"
cp -a /usr/include/absl "$dest/include/"
# Gloo's headers (Debian libgloo-dev, declarations only: docs/distributed.md).
[[ -f /usr/include/gloo/algorithm.h ]] || {
  echo "stage-gpu-deps: Gloo's headers are not installed here (run scripts/install-deps.sh)" >&2; exit 1; }
cp -a /usr/include/gloo "$dest/include/"
cp -a "$src_lib"/libabsl_*.so* "$dest/lib/$multiarch/"
# TurboJPEG (Debian libturbojpeg0-dev), so that the engine there decodes JPEG
# on the host too: the GPU decoder is checked against it.
if [[ -f /usr/include/turbojpeg.h ]]; then
  cp -a /usr/include/turbojpeg.h "$dest/include/"
  cp -a "$src_lib"/libturbojpeg.so* "$dest/lib/$multiarch/"
fi
cp -a "$src_lib/cmake" "$dest/lib/$multiarch/cmake-all"
mkdir -p "$dest/lib/$multiarch/cmake"
mv "$dest/lib/$multiarch/cmake-all/absl" "$dest/lib/$multiarch/cmake/absl"
rm -rf "$dest/lib/$multiarch/cmake-all"
du -sh "$dest"
