#!/usr/bin/env python3
"""The chaos suite: faults injected into a real clmae service (a coordinator
and two one-slot CPU agents running 2-rank tiny CL-MAE jobs on synthetic
data) and what became of the job. See docs/reliability.md.

usage: chaos.py [BUILD_DIR] [--seed N] [--only NAME,...] [--work DIR] [--keep] [--list]

  BUILD_DIR   the build folder holding the binaries (default: build)
  --seed N    seed of the random kill points (default: from the clock; printed)
  --only      run only these scenarios (names as --list prints them)
  --work DIR  where each scenario's folder goes (default: runs/chaos/<UTC time>);
              a scenario's folder (logs, state) is kept when its goal was not
              met, or always with --keep
  --list      print the scenarios and exit

Prints a table (scenario, what it did, detection time, outcome, goal met)
and exits 1 if any goal was not met, 2 on a usage error or missing binaries.
The table and every check also go to results.md and results.json in the work
folder.
"""

import json
import os
import shutil
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, binaries_origin, timing_args  # noqa: E402
from scenarios import SCENARIOS, Result, terminal  # noqa: E402

BINARIES = ["services/clmae-coordinator", "worker/agent/clmae-worker", "worker/train/clmae-train",
            "services/clmaectl/clmaectl"]


class Context:
    """What a scenario gets: its folder, the seed, and a cluster on demand."""

    def __init__(self, build, folder, seed):
        self.build = build
        self.folder = folder
        self.seed = seed
        self.c = None
        self.cleanups = []

    def cluster(self, start=True, agents=True):
        self.c = Cluster(self.build, self.folder)
        if start:
            self.c.start(agents=agents)
        return self.c


def finish(ctx, r):
    """Stops the cluster and checks for orphan trainers: none may run once
    every job of the scenario is final, nor after the agents stopped."""
    c = ctx.c
    if c is None:
        return
    try:
        jobs = list(c.monitor.jobs)
        all_final = jobs and all(terminal(c.get(j)) for j in jobs)
        left = c.orphans()
        deadline = time.monotonic() + 10
        while all_final and left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = c.orphans()
        running_after_end = left if all_final else {}
    finally:
        c.stop()
    # Why each attempt ended, from the job store (the coordinator is down now).
    failures = c.attempt_failures()
    with open(os.path.join(ctx.folder, "events.txt"), "w") as f:
        for row in c.events():
            f.write(" | ".join(str(x) for x in row) + "\n")
    for job_id, attempt, message in failures:
        r.notes.append(f"{job_id} attempt {attempt} ended: {one_line(message)}")
    time.sleep(1)
    after_stop = c.reap_orphans()
    orphans = {**running_after_end, **after_stop}
    r.check(not orphans, "no clmae-train left running" + (
        "" if not orphans else ": " + "; ".join(
            f"pid {pid} {' '.join(a for a in argv if '/' in a and a.endswith('.yaml'))}"
            for pid, argv in list(orphans.items())[:4])))


def one_line(message, width=300):
    """A message's first line, and its last (the rank log's last line, where
    the coordinator appends one), each cut to `width`."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    cut = [line if len(line) <= width else line[:width - 1] + "…" for line in lines]
    return cut[0] + (f" … {cut[-1]}" if len(cut) > 1 else "")


def run_one(build, work, name, title, fn, seed, keep):
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    ctx = Context(build, folder, seed)
    r = Result(name, title)
    start = time.monotonic()
    try:
        fn(ctx, r)
    except Exception as e:  # a broken scenario is a goal not met, with the reason
        r.check(False, f"the scenario raised {type(e).__name__}: {e}")
        with open(os.path.join(folder, "traceback.txt"), "w") as f:
            f.write(traceback.format_exc())
    finally:
        try:
            finish(ctx, r)
        except Exception as e:
            r.check(False, f"stopping the cluster raised {type(e).__name__}: {e}")
        for cleanup in ctx.cleanups:
            try:
                cleanup()
            except Exception:
                pass
    r.seconds = time.monotonic() - start
    if r.met and not keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        with open(os.path.join(folder, "result.json"), "w") as f:
            json.dump(r.as_dict(), f, indent=1)
    return r


def cell(text, width=None):
    text = str(text).replace("|", "/").replace("\n", " ")
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def table(results, width=None):
    rows = ["| scenario | what it did | detection | outcome (final state: message) | goal met |",
            "|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {cell(r.title)} | {cell(r.action, width)} | {cell(r.detection, width)} | "
                    f"{cell(r.outcome, width)} | {'yes' if r.met else '**no**'} |")
    return "\n".join(rows)


def reasons(results):
    lines = []
    for r in results:
        if not r.met:
            lines.append(f"- {r.title} ({r.name}, {r.seconds:.0f} s): " + "; ".join(r.unmet()))
        for note in r.notes:
            lines.append(f"  - note ({r.name}): {note}")
    return "\n".join(lines)


def main(argv):
    args = argv[1:]
    build, seed, only, work, keep = "build", None, None, None, False
    try:
        while args:
            a = args.pop(0)
            if a == "--seed":
                seed = int(args.pop(0))
            elif a == "--only":
                only = args.pop(0).split(",")
            elif a == "--work":
                work = args.pop(0)
            elif a == "--keep":
                keep = True
            elif a == "--list":
                for name, title, _ in SCENARIOS:
                    print(f"{name:24} {title}")
                return 0
            elif a in ("-h", "--help"):
                print(__doc__)
                return 0
            elif a.startswith("-"):
                raise ValueError(f"unknown flag {a}")
            else:
                build = a
    except (IndexError, ValueError) as e:
        print(f"chaos: {e}\n{__doc__}", file=sys.stderr)
        return 2
    names = [n for n, _, _ in SCENARIOS]
    if only and set(only) - set(names):
        print(f"chaos: unknown scenarios {sorted(set(only) - set(names))}; --list", file=sys.stderr)
        return 2
    build = os.path.abspath(build)
    missing = [b for b in BINARIES if not os.access(os.path.join(build, b), os.X_OK)]
    if missing:
        print(f"chaos: {build} lacks {', '.join(missing)}: build first (make build) or pass "
              "BUILD_DIR=", file=sys.stderr)
        return 2
    if seed is None:
        seed = int(time.time()) % 100000
    work = os.path.abspath(work or os.path.join(
        "runs", "chaos", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    os.makedirs(work, exist_ok=True)

    origin = binaries_origin(build)
    _, skipped = timing_args(build)
    print(f"chaos: binaries {origin}", flush=True)
    print(f"chaos: seed {seed} (rerun with --seed {seed}); scenario folders under {work}",
          flush=True)
    if skipped:
        print(f"chaos: this coordinator does not know {' '.join(skipped)}: left out", flush=True)

    results = []
    start = time.monotonic()
    for name, title, fn in SCENARIOS:
        if only and name not in only:
            continue
        print(f"chaos: {title} ...", flush=True)
        r = run_one(build, work, name, title, fn, seed, keep)
        results.append(r)
        print(f"chaos:   {'goal met' if r.met else 'GOAL NOT MET'} in {r.seconds:.0f} s: "
              f"{r.action} | detection {r.detection} | {r.outcome}", flush=True)
        for text in r.unmet():
            print(f"chaos:   - {text}", flush=True)
        for note in r.notes:
            print(f"chaos:   note: {note}", flush=True)
    elapsed = time.monotonic() - start

    met = sum(r.met for r in results)
    summary = f"{met}/{len(results)} goals met in {elapsed / 60:.1f} min, seed {seed}"
    flags = (f"coordinator flags this binary does not know, left out: {' '.join(skipped)}\n\n"
             if skipped else "")
    report = (f"binaries: {origin}\n\n{flags}{table(results)}\n\n{summary}\n"
              + (f"\n{reasons(results)}\n" if reasons(results) else ""))
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"binaries": origin, "seed": seed, "seconds": round(elapsed),
                   "skipped_flags": skipped, "results": [r.as_dict() for r in results]}, f, indent=1)
    print()
    print(table(results, width=110))
    print()
    print(summary)
    if reasons(results):
        print(reasons(results))
    print(f"(results.md, results.json and the folders of unmet goals: {work})")
    return 0 if met == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
