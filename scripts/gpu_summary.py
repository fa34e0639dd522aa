#!/usr/bin/env python3
"""The side-by-side table of a scripts/gpu-check.sh run: clmae, PyTorch eager
and PyTorch + torch.compile per workload and batch, with images/s, MFU, peak
memory and the ratios against both baselines; then the data loader decoding
on the host and on the GPU (images/s, host CPU per image, cores per GPU).

    scripts/gpu_summary.py OUT_DIR

Reads the JSON lines the benchmarks print (*.txt in OUT_DIR). MFU for the
PyTorch runs uses the model FLOPs per image that clmae-bench-engine computed
for the same workload (the same model and step) and the bf16 matmul rate it
measured on the device.
"""
import json
import pathlib
import sys


def records(out):
    for path in sorted(pathlib.Path(out).glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "images_per_second" in r:
                    r.setdefault("variant", "clmae" if "model_tflops" in r else "eager")
                    yield r


def loader_records(out):
    for path in sorted(pathlib.Path(out).glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("{") and '"loaders"' in line:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                for loader in r["loaders"]:
                    yield r, loader


def print_loaders(out):
    rows = list(loader_records(out))
    if not rows:
        return
    print()
    print(f"{'data loader (JPEG ' + rows[0][0]['chroma'] + ', 224 crop)':38s} {'workers':>7s} "
          f"{'img/s':>9s} {'host ms/img':>12s} {'cores/GPU at':>13s}")
    for r, loader in rows:
        cores = ", ".join(f"{x['cores']:.1f} @ {x['gpu_rate']:.0f}" for x in loader["rates"])
        print(f"{'decode on ' + loader['device']:38s} {loader['workers']:7d} "
              f"{loader['images_per_s']:9.1f} {loader['cpu_ms_per_image']:12.2f}   {cores}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = list(records(sys.argv[1]))
    if not rows:
        print_loaders(sys.argv[1])
        sys.exit(f"gpu_summary: no benchmark records in {sys.argv[1]}")
    by = {}
    for r in rows:
        by.setdefault((r["preset"], r["mode"], r["batch"]), {})[r["variant"]] = r
    print(f"{'workload':38s} {'variant':12s} {'img/s':>9s} {'MFU':>7s} {'peak GiB':>9s} "
          f"{'vs eager':>9s} {'vs compiled':>12s}")
    for (preset, mode, batch), v in sorted(by.items()):
        c = v.get("clmae") or v.get("clmae+graphs")
        flops_per_img = rate = None
        if c and c.get("matmul_tflops", 0) > 0:
            flops_per_img = c["model_tflops"] * 1e12 / c["images_per_second"]
            rate = c["matmul_tflops"] * 1e12
        for variant in ("clmae", "clmae+graphs", "eager", "compiled"):
            r = v.get(variant)
            if r is None:
                continue
            ips = r["images_per_second"]
            mfu = f"{100 * flops_per_img * ips / rate:6.1f}%" if flops_per_img else "      -"
            ratios = []
            for base in ("eager", "compiled"):
                b = v.get(base)
                ratios.append(f"{ips / b['images_per_second']:.2f}x" if b and variant != base else "-")
            extra = (f"  (compile + warm-up {r['compile_seconds']:.0f} s)"
                     if r.get("compile_seconds") else "")
            print(f"{preset + ' ' + mode + ' b' + str(batch):38s} {variant:12s} {ips:9.1f} {mfu:>7s} "
                  f"{r['peak_bytes'] / 2**30:9.2f} {ratios[0]:>9s} {ratios[1]:>12s}{extra}")
    print_loaders(sys.argv[1])


if __name__ == "__main__":
    main()
