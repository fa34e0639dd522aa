#!/usr/bin/env python3
"""scripts/compare.py (make compare) without the real trainer.

  - --report-only on fabricated runs, two methods x two seeds of outputs as
    clmae-train writes them (metrics.jsonl with iteration and evaluation
    lines, a resumed step appearing twice, a line cut short; eval.json;
    previews): results.md holds the known mean ± std over seeds (k-NN, probe,
    wall-clock) and n/a for a skipped probe, results.json parses and carries
    every run's values, quality.png, losses.png and masks.png are PNG files
    of plausible sizes, and a missing run fails with exit code 2, naming it;
  - training with a stand-in clmae-train: each spec is its reference example
    with only the budget, outputs and evaluation schedule changed; a rerun
    skips the finished runs; a failing run exits 1 naming the run and the
    last lines of its log.

Fails (does not skip) when the Python running it lacks matplotlib or PyYAML:
scripts/install-deps.sh installs them into the project venv.

usage: compare_test.py   (with the project venv's python)
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import matplotlib
    import numpy as np
    import yaml  # noqa: F401 (compare.py needs it)
    matplotlib.use("Agg")
    import matplotlib.image
except ImportError as e:
    print(f"compare_test: Python package '{e.name}' is missing from {sys.executable}: run "
          "scripts/install-deps.sh (it installs deps.lock's pypi packages into .venv)",
          file=sys.stderr)
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "compare.py")
PER_EPOCH, EPOCHS, K, SIDE = 10, 2, 4, 28
# method -> seed -> final k-NN top-1, linear-probe top-1, wall-clock seconds
FINAL = {"clmae": {0: (0.80, 0.75, 100.0), 1: (0.84, 0.77, 120.0)},
         "mae": {0: (0.70, None, 60.0), 1: (0.70, None, 60.0)}}


def write_outputs(output_dir, method, seed):
    """What clmae-train leaves in output.dir: metrics.jsonl, eval.json, previews."""
    knn, probe, _ = FINAL[method][seed]
    os.makedirs(os.path.join(output_dir, "previews"), exist_ok=True)
    clmae = method == "clmae"
    lines = []
    for step in range(1, PER_EPOCH * EPOCHS + 1):
        lam = 1.0 - 2.0 * (step - 1) / (PER_EPOCH * EPOCHS - 1) if clmae else 0.0
        masker = 0.5 / step if clmae else 0.0
        lines.append({"step": step, "epoch": (step - 1) // PER_EPOCH, "lambda_cl": lam,
                      "lr": 1e-4, "loss_mae": 1.0 / step + 0.01 * seed + 0.1 * clmae,
                      "masker_rec": masker, "masker_gauss": masker, "masker_kl": masker,
                      "masker_div": masker, "masker_total": -masker,
                      "mask_mean_score": 0.25, "mask_near_binary": 0.5, "grad_norm_mae": 1.0,
                      "grad_norm_masker": 1.0 if clmae else 0.0, "data_s": 0.01,
                      "phase_a_s": 0.1, "phase_b_s": 0.1 if clmae else 0.0,
                      "optimizer_s": 0.01, "comm_wait_s": 0.0, "step_s": 0.2})
    for epoch in range(EPOCHS + 1):
        value = 0.3 + (knn - 0.3) * epoch / EPOCHS
        lines.append({"event": "eval", "step": epoch * PER_EPOCH, "epoch": epoch,
                      "lambda_cl": 1.0 - epoch, "knn_top1": value,
                      "knn_top1_patch_mean": value - 0.05, "train_images": 1000,
                      "test_images": 500, "seconds": 3.0})
    # A resumed run repeats its last step; the last occurrence wins.
    lines.append(dict(lines[PER_EPOCH * EPOCHS - 1], loss_mae=0.05))
    with open(os.path.join(output_dir, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))
        f.write('{"step": 3, "epoch"')  # cut short by a kill
    final = {"knn_k": 5, "knn_top1": knn, "knn_top1_patch_mean": knn - 0.05, "probe_top1": probe,
             "raw_pixels_knn_top1": 0.78, "random_init_knn_top1": 0.30 + 0.01 * seed,
             "random_init_knn_top1_patch_mean": 0.25, "train_images": 6000, "test_images": 1000}
    with open(os.path.join(output_dir, "eval.json"), "w") as f:
        json.dump(final, f)
    rng = np.random.default_rng(seed)
    for step in (5, 10, 20):  # K rows of 4 panels: original | scores | kept | reconstruction
        image = rng.random((K * SIDE, 4 * SIDE, 3))
        for row in range(K):
            image[row * SIDE:(row + 1) * SIDE, SIDE:2 * SIDE] = [step / 20, row / K, 1 - step / 20]
        matplotlib.image.imsave(os.path.join(output_dir, "previews", f"step-{step:09d}.png"), image)


def write_run(out, method, seed):
    """A finished run's folder as compare.py leaves it."""
    folder = os.path.join(out, f"{method}-seed{seed}")
    write_outputs(os.path.join(folder, "output"), method, seed)
    with open(os.path.join(folder, "wall.json"), "w") as f:
        json.dump({"seconds": FINAL[method][seed][2], "attempts": 1, "parallel": 2}, f)
    if method == "clmae":  # the plain-MAE runs have no spec.yaml: the report uses the arguments
        spec = {"data": {"limit": 640}, "train": {"epochs": EPOCHS, "batch_size": 64},
                "eval": {"every_epochs": 1, "probe_epochs": 10}, "output": {"preview_images": K}}
        with open(os.path.join(folder, "spec.yaml"), "w") as f:
            yaml.safe_dump(spec, f)


# A stand-in for clmae-train: writes the outputs of its spec's method and
# seed, or fails like a trainer when $FAKE_FAIL names its job.
FAKE_TRAINER = f"""#!{sys.executable}
import os, sys, yaml
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import compare_test
spec = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
print("fake clmae-train", *sys.argv[1:])
if os.environ.get("FAKE_FAIL") == spec["name"]:
    print("error: data.path: no such folder")
    sys.exit(1)
method = "clmae" if spec["masking"]["mode"] == "CLMAE" else "mae"
compare_test.write_outputs(spec["output"]["dir"], method, spec["train"]["seed"])
"""


def run_compare(*args, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=100, env=dict(os.environ, **(env or {})))


class CompareReportTest(unittest.TestCase):
    def setUp(self):
        self.temp = tempfile.TemporaryDirectory(prefix="clmae-compare-")
        self.out = os.path.join(self.temp.name, "report")
        for method in FINAL:
            for seed in FINAL[method]:
                write_run(self.out, method, seed)

    def tearDown(self):
        self.temp.cleanup()

    def test_report(self):
        r = run_compare("--report-only", "--out", self.out, "--seeds", "0,1", "--epochs", "2")
        self.assertEqual(r.returncode, 0, f"compare.py failed:\n{r.stdout}\n{r.stderr}")
        with open(os.path.join(self.out, "results.md")) as f:
            md = f.read()
        rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in md.splitlines() if line.startswith("| ")}
        # knn 80, 84 -> 82.0 ± 2.8; probe 75, 77 -> 76.0 ± 1.4; wall 100, 120 -> 110.0 ± 14.1
        self.assertEqual(rows["CL-MAE"], ["2", "82.0 ± 2.8", "77.0 ± 2.8", "76.0 ± 1.4",
                                          "110.0 ± 14.1"], md)
        self.assertEqual(rows["plain MAE"],
                         ["2", "70.0 ± 0.0", "65.0 ± 0.0", "n/a", "60.0 ± 0.0"])
        self.assertEqual(rows["raw pixels"], ["78.0 ± 0.0", "78.0 ± 0.0"])
        self.assertEqual(rows["random-init encoder, class token"], ["30.5 ± 0.7", "30.5 ± 0.7"])
        self.assertIn("make compare COMPARE_ARGS=", md)
        self.assertIn("640 images, 2 epochs, batch 64", md)
        self.assertIn("82.0 ± 2.8", r.stdout)  # the table is printed too

        with open(os.path.join(self.out, "results.json")) as f:
            results = json.load(f)
        clmae = results["methods"]["clmae"]
        self.assertAlmostEqual(clmae["knn_top1"]["mean"], 0.82)
        self.assertEqual([run["knn_top1"] for run in clmae["per_run"]], [0.80, 0.84])
        self.assertIsNone(results["methods"]["mae"]["probe_top1"])
        self.assertEqual(results["budget"]["runs_at_once"], 2)

        for name, min_side in (("quality.png", 300), ("losses.png", 300), ("masks.png", 300)):
            path = os.path.join(self.out, name)
            self.assertIn(f"wrote {path}", r.stdout)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG")
            self.assertGreater(os.path.getsize(path), 5000, name)
            h, w = matplotlib.image.imread(path).shape[:2]
            self.assertTrue(min_side <= min(h, w) and max(h, w) <= 4000, f"{name}: {w}x{h}")
        h, w = matplotlib.image.imread(os.path.join(self.out, "masks.png")).shape[:2]
        self.assertGreater(h, w * 0.5, "masks.png: expected one row per preview (3 rows)")

    def test_missing_run_fails(self):
        r = run_compare("--report-only", "--out", self.out, "--seeds", "0,1,2")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("clmae-seed2", r.stderr)

    def test_training(self):
        build = os.path.join(self.temp.name, "build")
        trainer = os.path.join(build, "worker", "train", "clmae-train")
        os.makedirs(os.path.dirname(trainer))
        with open(trainer, "w") as f:
            f.write(FAKE_TRAINER)
        os.chmod(trainer, 0o755)
        out = os.path.join(self.temp.name, "trained")
        args = ["--build", build, "--out", out, "--seeds", "0,1", "--epochs", "2", "--limit", "640",
                "--probe-epochs", "3", "--parallel", "2"]
        r = run_compare(*args)
        self.assertEqual(r.returncode, 0, f"compare.py failed:\n{r.stdout}\n{r.stderr}")
        for method, example in (("clmae", "tiny-fashion-mnist.yaml"),
                                ("mae", "tiny-fashion-mnist-plain-mae.yaml")):
            with open(os.path.join(ROOT, "examples", example)) as f:
                reference = yaml.safe_load(f)
            with open(os.path.join(out, f"{method}-seed1", "spec.yaml")) as f:
                spec = yaml.safe_load(f)
            for section in ("model", "masking", "curriculum", "optimizer", "resources"):
                self.assertEqual(spec[section], reference[section], f"{method}: {section} changed")
            self.assertEqual(spec["name"], f"compare-{method}-seed1")
            self.assertEqual(spec["data"], dict(reference["data"], limit=640))
            self.assertEqual(spec["train"], dict(reference["train"], epochs=2, seed=1, threads=1))
            output_dir = os.path.join(out, f"{method}-seed1", "output")
            self.assertEqual(spec["output"],
                             dict(reference["output"], preview_every=2, dir=output_dir))
            self.assertEqual(spec["eval"], dict(reference["eval"], enabled=True, every_epochs=1,
                                                probe_epochs=3, train_limit=6000, test_limit=1000))
        for name in ("results.md", "results.json", "quality.png", "losses.png", "masks.png"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)

        r = run_compare(*args)  # all done with the same specs: nothing runs again
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("skipped"), 4, r.stdout)

        args[args.index("--epochs") + 1] = "3"  # changed specs: every run trains again
        r = run_compare(*args, env={"FAKE_FAIL": "compare-mae-seed1"})
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("run mae-seed1 failed: exit code 1", r.stderr)
        self.assertIn("error: data.path: no such folder", r.stderr)  # the log's last lines
        with open(os.path.join(out, "clmae-seed0", "spec.yaml")) as f:
            self.assertEqual(yaml.safe_load(f)["train"]["epochs"], 3)


if __name__ == "__main__":
    unittest.main()
