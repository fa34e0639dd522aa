#!/usr/bin/env bash
# GPU check, run on a machine with an NVIDIA GPU, CUDA, CMake, ninja and
# PyTorch (whose LibTorch the engine builds against), after
# scripts/stage-gpu-deps.sh staged Abseil and Gloo's headers into .deps/absl
# on the build host. Sections, in this order (default: check profile engine
# compile loader):
#   (always) builds the engine-only target (engine + benchmarks);
#   check    one CL-MAE iteration on CUDA against the CPU on the same weights
#            and inputs (fp32 and bf16), then queued iterations under CUDA's
#            sync-debug mode "error" (no host synchronisation on the hot path),
#            then CUDA-graphed runs against eager ones (fp32, 20 iterations,
#            and across a resume), then JPEG decoding on the GPU (nvJPEG)
#            against the host decoder, image by image and as loader batches;
#   profile  ViT-B/16 224 bf16 batch 64 through the Kineto profiler: time per
#            kernel group (GEMM, attention, normalisation, elementwise,
#            optimizer, copies) and the device's idle time; Chrome trace;
#   engine   clmae at batch 64/128/256, clmae with CUDA graphs at 64, and
#            PyTorch eager at 64 on ViT-B/16 224 bf16 (and the tiny preset),
#            MFU against the bf16 matmul rate measured here;
#   compile  the same step in PyTorch with torch.compile at batch 64 (compile
#            time reported apart); then the side-by-side table of everything
#            measured (summary.txt);
#   loader   the data loader over ImageNet-sized 4:2:0 JPEGs, decoding on
#            the host and on the GPU: images/s and host cores per GPU;
#   dist     NCCL with one rank: gradient-averaging bandwidth, communication
#            wait with and without overlap (not in the default).
#   scripts/gpu-check.sh [check] [profile] [engine] [compile] [loader] [dist]
# Results go to $OUT (default ./gpu-out).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
cd "$root"
py=${PYTHON:-python3}
exec > >(tee "$out/gpu-check.log") 2>&1
sections=" ${*:-check profile engine compile loader} "
want() { [[ $sections == *" $1 "* ]]; }

echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
git log -1 --format='commit %H %s' 2>/dev/null || true
prefix=()
if [[ -d .deps/absl ]]; then
  prefix=(-DCMAKE_PREFIX_PATH="$root/.deps/absl")
  export LD_LIBRARY_PATH="$root/.deps/absl/lib/$(ls .deps/absl/lib | head -1)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "== build (engine only)"
t0=$(date +%s)
CLMAE_PYTHON=$(command -v "$py") cmake -S . -B build-gpu -G Ninja -DCLMAE_ENGINE_ONLY=ON \
  -DCLMAE_BUILD_TESTS=OFF "${prefix[@]}" > "$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
ninja -C build-gpu -j "$(nproc)" clmae-bench-engine clmae-bench-dist clmae-bench-loader > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
grep -m1 "clmae_engine: NCCL" "$out/cmake.log" || true
bench=build-gpu/bench/clmae-bench-engine
loader=build-gpu/bench/clmae-bench-loader
vitb=(--preset mae_vit_base_patch16 --bf16)

if want check; then
  echo "== correctness: CUDA vs CPU, one CL-MAE iteration; no host synchronisation"
  $bench --device cuda --preset tiny --bf16 --check-against-cpu --steps 3 --warmup 1 --mode clmae | tee "$out/check.txt"
  $bench --device cuda --preset tiny --check-graphs --steps 3 --warmup 1 --mode clmae | tee "$out/check-graphs.txt"
  echo "== correctness: JPEG decoding on the GPU (nvJPEG) vs the host (libjpeg-turbo)"
  $loader --check-gpu-decode --images 16 --seconds 1 | tee "$out/check-gpu-decode.txt" || true
fi
if want profile; then
  echo "== profile: ViT-B/16 224, batch 64, bf16"
  $bench --device cuda "${vitb[@]}" --batch 64 --steps 10 --warmup 3 --profile "$out/trace-vitb16-b64.json" \
    | tee "$out/profile.txt"
fi
if want engine; then
  echo "== tiny, batch 64, fp32: clmae and PyTorch eager"
  $bench --device cuda --preset tiny --batch 64 --steps 30 --warmup 5 | tee "$out/tiny-fp32.txt"
  "$py" bench/pytorch_baseline.py --device cuda --preset tiny --batch 64 --steps 30 --warmup 5 | tee "$out/tiny-fp32-eager.txt"
  for b in 64 128 256; do
    echo "== ViT-B/16 224 bf16, batch $b: clmae"
    $bench --device cuda "${vitb[@]}" --batch "$b" --steps 20 --warmup 5 | tee "$out/vitb16-b$b.txt"
  done
  echo "== ViT-B/16 224 bf16, batch 64: clmae with CUDA graphs"
  $bench --device cuda "${vitb[@]}" --batch 64 --steps 20 --warmup 5 --cuda-graphs | tee "$out/vitb16-b64-graphs.txt"
  $bench --device cuda --preset tiny --batch 64 --steps 30 --warmup 5 --cuda-graphs | tee "$out/tiny-fp32-graphs.txt"
  echo "== ViT-B/16 224 bf16, batch 64: PyTorch eager"
  "$py" bench/pytorch_baseline.py --device cuda "${vitb[@]}" --batch 64 --steps 20 --warmup 5 \
    | tee "$out/vitb16-b64-eager.txt"
fi
if want compile; then
  echo "== ViT-B/16 224 bf16, batch 64: PyTorch + torch.compile"
  "$py" bench/pytorch_baseline.py --device cuda "${vitb[@]}" --batch 64 --steps 20 --warmup 3 --compile \
    | tee "$out/vitb16-b64-compiled.txt"
fi
if want loader; then
  echo "== data loader, ImageNet-sized 4:2:0 JPEGs: decoding on the host and on the GPU"
  $loader --images 64 --seconds 10 --loader cpu --workers 4 | tee "$out/loader-w4.txt" || true
  $loader --images 64 --seconds 10 --loader cpu --loader cuda --workers 8 | tee "$out/loader-w8.txt" || true
  $loader --images 64 --seconds 10 --loader cuda --workers 2 | tee "$out/loader-gpu-w2.txt" || true
fi
if want dist; then
  echo "== NCCL, one rank on one GPU: ViT-B/16 224, batch 64, bf16"
  grep -m1 "clmae_engine: NCCL" "$out/cmake.log" || true
  build-gpu/bench/clmae-bench-dist --device cuda --world 1 --preset mae_vit_base_patch16 --batch 64 --bf16 \
    --steps 10 --warmup 3 --sizes 1,4,25,100,400 | tee "$out/dist-nccl-1rank.txt"
fi
echo "== summary (side by side)"
"$py" scripts/gpu_summary.py "$out" | tee "$out/summary.txt"
echo "== done"
