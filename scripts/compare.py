#!/usr/bin/env python3
"""CL-MAE against the plain-MAE baseline on the same budget, over several seeds.

For each method and seed it writes a job spec from the reference example
(examples/tiny-fashion-mnist.yaml, examples/tiny-fashion-mnist-plain-mae.yaml)
with only the budget, the output folder and the evaluation schedule changed
(optimizer, curriculum and masking stay the reference defaults: neither
method is tuned), runs clmae-train for each, several at once with one thread
each, and writes into --out:

  results.md, results.json  k-NN top-1 (class token, patch-token mean),
                            linear-probe top-1 and wall-clock per method,
                            mean ± std over seeds; the raw-pixel and
                            random-init baselines; budget, machine, command
  quality.png               k-NN top-1 over training, with CL-MAE's λ_cl
  losses.png                loss_mae of both methods; the masker's terms
  masks.png                 the CL-MAE masker's score maps across training

Each run lives in <out>/<method>-seed<N>/ (spec.yaml, train.log, output/).
Rerunning skips the runs finished with an unchanged spec and resumes an
interrupted one from its checkpoint.

  make compare [COMPARE_ARGS="--seeds 0,1 --epochs 3"]
  .venv/bin/python scripts/compare.py [--build build] [--out runs/compare] ...
  .venv/bin/python scripts/compare.py --report-only --out runs/compare

Needs PyYAML and matplotlib in the project venv (scripts/install-deps.sh).
Exit codes: 0 done, 1 a run failed, 2 bad arguments or missing inputs,
130 interrupted.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

try:
    import matplotlib
    import numpy as np
    import yaml
    matplotlib.use("Agg")
    import matplotlib.image
    import matplotlib.pyplot as plt
except ImportError as e:
    print(f"compare.py: Python package '{e.name}' is missing from {sys.executable}: run "
          "scripts/install-deps.sh and use the project venv (.venv/bin/python)", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {  # name -> (label, reference spec)
    "clmae": ("CL-MAE", "examples/tiny-fashion-mnist.yaml"),
    "mae": ("plain MAE", "examples/tiny-fashion-mnist-plain-mae.yaml"),
}
COLORS = {"clmae": "tab:red", "mae": "tab:blue"}
FEATURES = [("knn_top1", "class token", "-"), ("knn_top1_patch_mean", "patch-token mean", "--")]
BASELINES = [  # eval.json key, label, line colour and style
    ("raw_pixels_knn_top1", "raw pixels", "black", ":"),
    ("random_init_knn_top1", "random-init encoder, class token", "gray", "-"),
    ("random_init_knn_top1_patch_mean", "random-init encoder, patch-token mean", "gray", "--")]
EVAL_TRAIN_LIMIT, EVAL_TEST_LIMIT = 6000, 1000
PREVIEWS = 10  # about this many previews over a run
print_lock = threading.Lock()
running = {}  # run name -> its clmae-train process, stopped on Ctrl-C


def say(message):
    with print_lock:
        print(f"[compare] {message}", flush=True)


def fail(message, code=2):
    print(f"compare.py: {message}", file=sys.stderr)
    sys.exit(code)


def counted(minimum):
    """An argparse type: an integer of at least `minimum`."""
    def parse(text):
        if not text.lstrip("-").isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got '{text}'")
        return int(text)
    return parse


def listed(allowed=None):
    """An argparse type: a comma-separated list of `allowed` names, or of integers; no repeats."""
    def parse(text):
        items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        bad = [t for t in items if (t not in allowed if allowed else not t.isdigit())]
        if bad or not items:
            what = ", ".join(allowed) if allowed else "integers >= 0"
            raise argparse.ArgumentTypeError(f"got '{text}'; expected a comma-separated list of "
                                             f"{what}")
        return items if allowed else [int(t) for t in items]
    return parse


def parse_args(argv):
    p = argparse.ArgumentParser(description="Train CL-MAE and plain MAE on the same budget over "
                                "several seeds; report k-NN / linear-probe accuracy and plots.")
    add = p.add_argument
    add("--build", default="build", help="build folder holding worker/train/clmae-train "
        "(default: %(default)s)")
    add("--out", default="runs/compare", help="folder for the runs and the report "
        "(default: %(default)s)")
    add("--seeds", type=listed(), default="0,1,2", help="comma-separated training seeds, one run "
        "per method and seed (default: %(default)s)")
    add("--epochs", type=counted(1), default=5, help="training epochs of each run "
        "(default: %(default)s)")
    add("--limit", type=counted(1), default=6000, help="training images of each run, data.limit "
        "(default: %(default)s)")
    add("--eval-every-epochs", type=counted(1), default=1, help="k-NN evaluation of the encoder "
        "every this many epochs during training (default: %(default)s)")
    add("--probe-epochs", type=counted(0), default=10, help="linear-probe epochs of the final "
        "evaluation; 0 skips the probe (default: %(default)s)")
    add("--parallel", type=counted(1), default=os.cpu_count() or 1, help="runs at once, each "
        "with train.threads 1 (default: the number of CPUs, %(default)s)")
    add("--methods", type=listed(list(METHODS)), default="clmae,mae", help="comma-separated "
        "methods: clmae (CL-MAE), mae (plain MAE) (default: %(default)s)")
    add("--report-only", action="store_true", help="train nothing: rebuild the table and plots "
        "from the finished runs in --out")
    return p.parse_args(argv)


def run_dir(args, method, seed):
    return os.path.join(os.path.abspath(args.out), f"{method}-seed{seed}")


def make_spec(args, method, seed):
    """One run's job spec as YAML text: the reference example, budget and outputs overridden."""
    with open(os.path.join(ROOT, METHODS[method][1])) as f:
        spec = yaml.safe_load(f)
    batch = spec["train"]["batch_size"]
    if args.limit < batch:
        fail(f"--limit {args.limit} is below the batch size {batch} of {METHODS[method][1]}")
    iterations = args.limit // batch * args.epochs  # the loader drops the last partial batch
    spec["name"] = f"compare-{method}-seed{seed}"
    spec["data"]["limit"] = args.limit
    spec["train"].update(epochs=args.epochs, seed=seed, threads=1)
    spec["output"].update(dir=os.path.join(run_dir(args, method, seed), "output"),
                          preview_every=max(1, iterations // PREVIEWS))
    spec.setdefault("eval", {}).update(
        enabled=True, every_epochs=args.eval_every_epochs, probe_epochs=args.probe_epochs,
        train_limit=EVAL_TRAIN_LIMIT, test_limit=EVAL_TEST_LIMIT)
    return (f"# Written by scripts/compare.py from {METHODS[method][1]}.\n"
            + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def train_one(args, name, folder, spec, binary, stop):
    """Skips, resumes or starts one run; None when it is done, else why it is not."""
    spec_path, out = os.path.join(folder, "spec.yaml"), os.path.join(folder, "output")
    wall_path, log_path = os.path.join(folder, "wall.json"), os.path.join(folder, "train.log")
    old = open(spec_path).read() if os.path.exists(spec_path) else None
    if old == spec and os.path.exists(os.path.join(out, "eval.json")):
        say(f"{name}: finished before with this spec, skipped")
        return None
    if stop.is_set():
        return "not started: another run failed"
    ckpts = os.path.join(out, "checkpoints")
    resume = old == spec and os.path.isdir(ckpts) and any(
        f.endswith(".ckpt") for f in os.listdir(ckpts))
    if not resume:  # a new or changed spec, or nothing to resume from: start clean
        shutil.rmtree(out, ignore_errors=True)
        for path in (wall_path, log_path):
            if os.path.exists(path):
                os.remove(path)
    os.makedirs(folder, exist_ok=True)
    with open(spec_path, "w") as f:
        f.write(spec)
    cmd = [binary, "--config", spec_path] + (["--resume", "auto"] if resume else [])
    say(f"{name}: {'resuming' if resume else 'training'}, log in {log_path}")
    wall = read_json(wall_path, {"seconds": 0.0, "attempts": 0})
    start = time.monotonic()
    try:
        with open(log_path, "ab") as log:
            running[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            rc = running[name].wait()
    finally:  # every attempt's wall-clock counts, an interrupted one's too
        running.pop(name, None)
        wall.update(seconds=wall["seconds"] + time.monotonic() - start,
                    attempts=wall["attempts"] + 1, parallel=args.parallel)
        with open(wall_path, "w") as f:
            json.dump(wall, f)
    if rc == 0 and os.path.exists(os.path.join(out, "eval.json")):
        say(f"{name}: done, {wall['seconds']:.0f} s")
        return None
    why = {0: "exited 0 without writing output/eval.json",
           75: "stopped after a checkpoint (exit 75); rerun to resume"}.get(rc, f"exit code {rc}")
    with open(log_path, errors="replace") as f:
        tail = "".join("    " + line for line in f.readlines()[-20:])
    return f"{why}; the last lines of {log_path}:\n{tail}"


def train_all(args):
    binary = os.path.abspath(os.path.join(args.build, "worker", "train", "clmae-train"))
    if not os.access(binary, os.X_OK):
        fail(f"no trainer at {binary}: build it (make build) or pass --build")
    jobs = {f"{m}-seed{s}": (run_dir(args, m, s), make_spec(args, m, s))
            for m in args.methods for s in args.seeds}  # CL-MAE first: the longer runs
    say(f"{len(jobs)} runs, {args.parallel} at once, in {os.path.abspath(args.out)}")
    stop, failures = threading.Event(), {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {pool.submit(train_one, args, name, folder, spec, binary, stop): name
                   for name, (folder, spec) in jobs.items()}
        try:
            for future in concurrent.futures.as_completed(futures):
                why = future.result()
                if why:
                    stop.set()  # let the running ones finish, start no more
                    failures[futures[future]] = why
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            for proc in list(running.values()):
                proc.terminate()  # clmae-train checkpoints, then exits 75
            say("interrupted: the running trainers are checkpointing; rerun the command to resume")
            pool.shutdown(wait=True)
            sys.exit(130)
    for name, why in sorted(failures.items()):
        print(f"compare.py: run {name} failed: {why}", file=sys.stderr)
    if failures:
        sys.exit(1)


def read_run(args, method, seed):
    """What the report needs of one finished run."""
    folder = run_dir(args, method, seed)
    out = os.path.join(folder, "output")
    final = read_json(os.path.join(out, "eval.json"))
    if final is None:
        fail(f"{out}/eval.json is missing: run {method}-seed{seed} has not finished (run "
             "scripts/compare.py without --report-only, with the same --out, --seeds, --methods)")
    iters, evals = {}, {}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short when a run was killed
            (evals if row.get("event") == "eval" else iters)[row["step"]] = row  # last one wins
    spec_path, previews = os.path.join(folder, "spec.yaml"), os.path.join(out, "previews")
    return {"method": method, "seed": seed, "final": final,
            "spec": yaml.safe_load(open(spec_path)) if os.path.exists(spec_path) else None,
            "iters": [iters[s] for s in sorted(iters)], "evals": [evals[s] for s in sorted(evals)],
            "wall": read_json(os.path.join(folder, "wall.json")),
            "previews": sorted(os.path.join(previews, p) for p in os.listdir(previews)
                               if p.startswith("step-") and p.endswith(".png"))
            if os.path.isdir(previews) else []}


def steps_per_epoch(run):
    for e in run["evals"]:  # an evaluation after E epochs at step S: S / E
        if e["epoch"] > 0:
            return e["step"] / e["epoch"]
    if run["spec"]:
        return run["spec"]["data"]["limit"] // run["spec"]["train"]["batch_size"]
    last = run["iters"][-1] if run["iters"] else {"step": 1, "epoch": 0}
    return last["step"] / (last["epoch"] + 1)


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def fmt(summary, scale=100.0):
    if summary is None:
        return "n/a"
    mean = f"{summary['mean'] * scale:.1f}"
    return mean if summary["n"] == 1 else f"{mean} ± {summary['std'] * scale:.1f}"


def by_step(runs, rows, key):
    """Epochs (fractional, from the step) and the mean and std over runs of `key`, by step."""
    values = {}
    for run in runs:
        for row in run[rows]:
            if row.get(key) is not None:
                values.setdefault(row["step"], []).append(row[key])
    steps = sorted(values)
    sd = [np.std(values[s], ddof=1) if len(values[s]) > 1 else 0.0 for s in steps]
    return (np.array(steps) / steps_per_epoch(runs[0]),
            np.array([np.mean(values[s]) for s in steps]), np.array(sd))


def smooth(y):
    """A light centred moving average (window: 1/40 of the run)."""
    ones = np.ones(max(1, len(y) // 40))
    return np.convolve(y, ones, "same") / np.convolve(np.ones(len(y)), ones, "same")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def summarize(args, runs):
    keys = [k for k, *_ in FEATURES] + ["probe_top1"] + [k for k, *_ in BASELINES]
    methods = {}
    for m in args.methods:
        mine = [r for r in runs if r["method"] == m]
        wall = [r["wall"]["seconds"] if r["wall"] else None for r in mine]
        methods[m] = {"label": METHODS[m][0], "runs": len(mine),
                      **{k: mean_std([r["final"].get(k) for r in mine]) for k in keys},
                      "wall_s": mean_std(wall),
                      "per_run": [{"seed": r["seed"], **r["final"], "wall_s": w}
                                  for r, w in zip(mine, wall)]}
    spec = next((r["spec"] for r in runs if r["spec"]), None)  # else: as the arguments say
    b = {"images": spec["data"]["limit"] if spec else args.limit,
         "epochs": spec["train"]["epochs"] if spec else args.epochs,
         "batch_size": spec["train"]["batch_size"] if spec else None,
         "seeds": args.seeds,
         "eval_every_epochs": spec["eval"]["every_epochs"] if spec else args.eval_every_epochs,
         "probe_epochs": spec["eval"]["probe_epochs"] if spec else args.probe_epochs,
         "eval_train_images": runs[0]["final"].get("train_images"),
         "eval_test_images": runs[0]["final"].get("test_images"),
         "threads_per_run": 1,
         "runs_at_once": next((r["wall"].get("parallel") for r in runs if r["wall"]), None)}
    flags = ["--out", args.out, "--seeds", ",".join(map(str, args.seeds)),
             "--epochs", str(b["epochs"]), "--limit", str(b["images"]),
             "--eval-every-epochs", str(b["eval_every_epochs"]),
             "--probe-epochs", str(b["probe_epochs"]), "--methods", ",".join(args.methods)]
    if b["runs_at_once"]:
        flags += ["--parallel", str(b["runs_at_once"])]
    return {"units": "accuracies are fractions in [0, 1], wall_s seconds; std is the sample "
                     "standard deviation over seeds (n - 1)",
            "methods": methods, "budget": b,
            "machine": {"platform": platform.platform(), "cpu": cpu_model(),
                        "cores": os.cpu_count()},
            "command": f"make compare COMPARE_ARGS={shlex.quote(shlex.join(flags))}"}


def write_markdown(path, s):
    ms = list(s["methods"].values())
    lines = ["# CL-MAE vs plain MAE", "",
             "Top-1 accuracy (%) on the test images and wall-clock, mean ± std over seeds "
             "(sample std).", "",
             "| method | runs | k-NN top-1, class token | k-NN top-1, patch-token mean "
             "| linear probe top-1 | wall-clock per run (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {m['label']} | {m['runs']} | {fmt(m['knn_top1'])} | "
              f"{fmt(m['knn_top1_patch_mean'])} | {fmt(m['probe_top1'])} | "
              f"{fmt(m['wall_s'], 1.0)} |" for m in ms]
    lines += ["", "Baselines, k-NN top-1 (%) measured in each run's final evaluation:", "",
              "| baseline | " + " | ".join(m["label"] for m in ms) + " |",
              "|---|" + "---|" * len(ms)]
    lines += [f"| {label} | " + " | ".join(fmt(m[key]) for m in ms) + " |"
              for key, label, *_ in BASELINES]
    b, mc = s["budget"], s["machine"]
    lines += ["", "## Budget", "",
              f"- training: {b['images']} images, {b['epochs']} epochs, batch {b['batch_size']}, "
              f"seeds {', '.join(map(str, b['seeds']))}; optimizer, curriculum and masking as in "
              "the reference examples",
              f"- evaluation: k-NN every {b['eval_every_epochs']} epoch(s); at the end k-NN and a "
              f"{b['probe_epochs']}-epoch linear probe; {b['eval_train_images']} train / "
              f"{b['eval_test_images']} test images",
              f"- {b['threads_per_run']} thread per run, {b['runs_at_once'] or 'n/a'} runs at once",
              f"- machine: {mc['platform']}, {mc['cpu']}, {mc['cores']} cores",
              "", "Reproduce:", "", "```sh", s["command"], "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot_quality(path, args, runs):
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for m in args.methods:
        mine = [r for r in runs if r["method"] == m]
        for key, label, style in FEATURES:
            x, y, sd = by_step(mine, "evals", key)
            ax.plot(x, 100 * y, style, color=COLORS[m], marker="o", ms=3,
                    label=f"{METHODS[m][0]}, {label}")
            ax.fill_between(x, 100 * (y - sd), 100 * (y + sd), color=COLORS[m], alpha=0.15, lw=0)
    for key, label, color, style in BASELINES:
        pooled = mean_std([r["final"].get(key) for r in runs])  # every run measures it
        if pooled:
            ax.axhline(100 * pooled["mean"], color=color, ls=style, lw=1, label=f"{label} (final)")
    # The evaluations during training use a subset (eval lines say which); the final one may not.
    sizes = next((f" ({e['train_images']} train / {e['test_images']} test images)"
                  for r in runs for e in r["evals"]), "")
    ax.set(xlabel="epoch", ylabel="k-NN top-1 (%)" + sizes,
           title=f"k-NN top-1 over training (mean ± std over {len(args.seeds)} seeds)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    cl = [r for r in runs if r["method"] == "clmae" and r["iters"]]
    if cl:
        twin = ax.twinx()
        x, lam, _ = by_step(cl, "iters", "lambda_cl")
        handles += twin.plot(x, lam, color="tab:green", lw=1, alpha=0.7)
        labels.append("λ_cl of CL-MAE (right axis)")
        twin.set(ylabel="λ_cl", ylim=(-1.1, 1.1))
    ax.legend(handles, labels, fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_losses(path, args, runs):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for m in args.methods:
        x, y, _ = by_step([r for r in runs if r["method"] == m], "iters", "loss_mae")
        left.plot(x, smooth(y), color=COLORS[m], label=METHODS[m][0])
    left.set(xlabel="epoch", ylabel="loss_mae", title="MAE loss (mean over seeds, smoothed)")
    cl = [r for r in runs if r["method"] == "clmae"]
    for key, color in (("masker_rec", "tab:purple"), ("masker_total", "tab:orange")):
        if cl:
            x, y, _ = by_step(cl, "iters", key)
            right.plot(x, smooth(y), color=color, label=key)
    right.set(xlabel="epoch", title="CL-MAE masker terms (mean over seeds, smoothed)")
    right.axhline(0, color="gray", lw=0.5)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_masks(path, run):
    """Panel 2 of each preview row (the masker's scores): one row per preview step."""
    k = ((run["spec"] or {}).get("output") or {}).get("preview_images", 4)
    previews = run["previews"]
    if len(previews) > 2 * PREVIEWS:
        pick = np.linspace(0, len(previews) - 1, 2 * PREVIEWS).astype(int)
        previews = [previews[i] for i in pick]
    lam = {r["step"]: r["lambda_cl"] for r in run["iters"]}
    fig, axes = plt.subplots(len(previews), k, figsize=(1.5 * k + 1.3, 1.5 * len(previews) + 0.5),
                             squeeze=False)
    for row, file in enumerate(previews):
        image = matplotlib.image.imread(file)[..., :3]
        h, w = image.shape[0] // k, image.shape[1] // 4
        step = int(os.path.basename(file)[len("step-"):-len(".png")])
        earlier = [s for s in lam if s <= step]
        label = f"step {step}" + (f"\nλ_cl {lam[max(earlier)]:+.2f}" if earlier else "")
        for col in range(k):
            ax = axes[row][col]
            ax.imshow(image[col * h:(col + 1) * h, w:2 * w], interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(f"image {col}", fontsize=8)
    fig.suptitle(f"CL-MAE masker scores, seed {run['seed']} (blue = masked, yellow = kept)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(args):
    runs = [read_run(args, m, s) for m in args.methods for s in args.seeds]
    summary = summarize(args, runs)
    out = os.path.abspath(args.out)
    written = [os.path.join(out, f) for f in ("results.md", "results.json", "quality.png",
                                              "losses.png", "masks.png")]
    write_markdown(written[0], summary)
    with open(written[1], "w") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    plot_quality(written[2], args, runs)
    plot_losses(written[3], args, runs)
    cl = [r for r in runs if r["method"] == "clmae" and r["previews"]]
    if cl:
        plot_masks(written[4], cl[0])
    else:
        written.pop()
        say("no CL-MAE run with previews: masks.png not written")
    with open(written[0]) as f:
        print(f.read())
    for path in written:
        print(f"wrote {path}")


def main(argv):
    args = parse_args(argv)
    if not args.report_only:
        train_all(args)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
