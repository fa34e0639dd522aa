"""The loader baseline for clmae-bench-loader: the same JPEGs decoded and
RandomResizedCrop'd (scale 0.2-1, ratio 3/4-4/3, bicubic, flip, normalise) on
one thread with Pillow and NumPy, as a PyTorch data loader worker does with
torchvision's PIL path, in images/s per core.

    python bench/loader_baseline.py DIR [--seconds 10] [--size 224]

DIR holds the JPEGs that `clmae-bench-loader --save DIR` wrote. The last line
is a JSON record.
"""

import argparse
import io
import json
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def crop_box(width, height, rng, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params: ten tries, then the centre."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x = rng.randint(0, width - w)
            y = rng.randint(0, height - h)
            return x, y, w, h
    w, h = min(width, height), min(width, height)
    return (width - w) // 2, (height - h) // 2, w, h


def transform(data, size, rng):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    t_decoded = time.perf_counter()
    x, y, w, h = crop_box(image.width, image.height, rng)
    image = image.resize((size, size), Image.BICUBIC, box=(x, y, x + w, y + h))
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (array - MEAN) / STD, t_decoded


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    names = sorted((n for n in os.listdir(args.dir) if n.endswith(".jpg")),
                   key=lambda n: int(n.split(".")[0]))
    if not names:
        sys.exit(f"loader_baseline.py: no .jpg files in {args.dir}")
    files = [open(os.path.join(args.dir, n), "rb").read() for n in names]
    rng = random.Random(0)
    for data in files:  # warm-up pass
        transform(data, args.size, rng)
    done, decode_s, transform_s = 0, 0.0, 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        t0 = time.perf_counter()
        out, t_decoded = transform(files[done % len(files)], args.size, rng)
        t1 = time.perf_counter()
        decode_s += t_decoded - t0
        transform_s += t1 - t_decoded
        assert out.shape == (3, args.size, args.size)
        done += 1
    wall = time.perf_counter() - start
    per_core = done / wall
    import PIL
    print(f"Pillow {PIL.__version__}: images/s per core: {per_core:.1f} "
          f"({1e3 * wall / done:.2f} ms each: decode {1e3 * decode_s / done:.2f} ms, "
          f"transform {1e3 * transform_s / done:.2f} ms)")
    print(json.dumps({"per_core": round(per_core, 2), "decode_ms": round(1e3 * decode_s / done, 3),
                      "transform_ms": round(1e3 * transform_s / done, 3),
                      "pillow": PIL.__version__}))


if __name__ == "__main__":
    main(sys.argv[1:])
