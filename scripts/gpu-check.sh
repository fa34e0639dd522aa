#!/usr/bin/env bash
# GPU check, run on a machine with an NVIDIA GPU, CUDA, CMake, ninja and
# PyTorch (whose LibTorch the engine builds against), after
# scripts/stage-gpu-deps.sh staged Abseil and Gloo's headers into .deps/absl
# on the build host:
#   1. builds the engine-only target (engine + benchmarks),
#   2. checks one CL-MAE iteration on CUDA against the CPU on the same weights
#      and inputs (fp32 and bf16),
#   3. [engine] times the tiny preset and ViT-B/16 at 224, batch 64, bf16,
#      against the same step in PyTorch eager on the same card, with MFU
#      against the bf16 matmul rate measured there,
#   4. [dist] NCCL with one rank on the GPU: gradient-averaging bandwidth,
#      communication wait with and without overlap, and the one-rank
#      overhead of the process group, on ViT-B/16 bf16.
#   scripts/gpu-check.sh [engine] [dist]     (default: both)
# Results go to $OUT (default ./gpu-out).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
cd "$root"
py=${PYTHON:-python3}
exec > >(tee "$out/gpu-check.log") 2>&1

echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
prefix=()
if [[ -d .deps/absl ]]; then
  prefix=(-DCMAKE_PREFIX_PATH="$root/.deps/absl")
  export LD_LIBRARY_PATH="$root/.deps/absl/lib/$(ls .deps/absl/lib | head -1)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "== build (engine only)"
t0=$(date +%s)
CLMAE_PYTHON=$(command -v "$py") cmake -S . -B build-gpu -G Ninja -DCLMAE_ENGINE_ONLY=ON \
  -DCLMAE_BUILD_TESTS=OFF "${prefix[@]}" > "$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
ninja -C build-gpu -j "$(nproc)" clmae-bench-engine clmae-bench-dist > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
bench=build-gpu/bench/clmae-bench-engine

echo "== correctness: CUDA vs CPU, one CL-MAE iteration"
$bench --device cuda --preset tiny --bf16 --check-against-cpu --steps 3 --warmup 1 --mode clmae | tee "$out/check.txt"
sections=${*:-engine dist}
if [[ " $sections " == *" engine "* ]]; then
echo "== tiny, batch 64 (fp32, then bf16)"
$bench --device cuda --preset tiny --batch 64 --steps 30 --warmup 5 | tee "$out/tiny-fp32.txt"
"$py" bench/pytorch_baseline.py --device cuda --preset tiny --batch 64 --steps 30 --warmup 5 | tee "$out/tiny-fp32-pytorch.txt"
echo "== ViT-B/16 224, batch 64, bf16"
$bench --device cuda --preset mae_vit_base_patch16 --batch 64 --bf16 --steps 20 --warmup 5 | tee "$out/vitb16-bf16.txt"
"$py" bench/pytorch_baseline.py --device cuda --preset mae_vit_base_patch16 --batch 64 --bf16 --steps 20 --warmup 5 \
  | tee "$out/vitb16-bf16-pytorch.txt"
fi
if [[ " $sections " == *" dist "* ]]; then
echo "== NCCL, one rank on one GPU: ViT-B/16 224, batch 64, bf16"
grep -m1 "clmae_engine: NCCL" "$out/cmake.log" || true
build-gpu/bench/clmae-bench-dist --device cuda --world 1 --preset mae_vit_base_patch16 --batch 64 --bf16 \
  --steps 10 --warmup 3 --sizes 1,4,25,100,400 | tee "$out/dist-nccl-1rank.txt"
fi
echo "== done"
