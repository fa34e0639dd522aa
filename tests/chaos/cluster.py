"""The cluster a chaos scenario runs against, and what the scenarios measure.

A `Cluster` is the integration tests' `Service` (tests/integration/
service_test.py: a coordinator, two agents with one CPU slot each, driven
through clmaectl) started with the chaos suite's short timings, plus:

- a `Monitor`: a thread that polls `clmaectl get -o json` for the jobs of
  the scenario and keeps a timeline, so detection times and the failure
  messages of intermediate attempts are seen even when the job succeeds;
- the ranks' logs (`<agent>/<job>/attempt-N/rank-R.log`): the step each
  attempt reached and the step it resumed from;
- orphans: `clmae-train` processes whose command line names the scenario's
  folder (every trainer's --config lies under its agent's work folder).
"""

import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from harness import processes  # noqa: E402
from service_test import Service, write_spec  # noqa: E402

CHECKPOINT_EVERY = 5
# Slower than the integration tests' model (about 4 steps/s with 2 ranks on
# 2 cores) so one checkpoint interval is longer than an upload, and a fault
# lands mid-job.
MODEL = ("{preset: tiny, img_size: 32, embed_dim: 64, depth: 2, num_heads: 2,\n"
         "        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}")
STEPS = 80
WORKERS = ("agent-a", "agent-b")

# The coordinator timings of the suite; a flag the binary does not know is
# left out (and reported).
COORDINATOR_TIMINGS = [("lease", "5s"), ("heartbeat_interval", "1s"), ("hang_timeout", "30s"),
                       ("restart_backoff_min", "1s"), ("recovery_grace", "10s")]

RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
STATE_RESTARTING, STATE_FAILED = 4, 6  # clmae.v1.JobState numbers, as the job store keeps them


def short_state(state):
    return (state or "?").replace("JOB_STATE_", "")


def coordinator_flags(build):
    """The flag names `clmae-coordinator --helpfull` lists."""
    r = subprocess.run([os.path.join(build, "services/clmae-coordinator"), "--helpfull"],
                       capture_output=True, text=True, timeout=30)
    return set(re.findall(r"^\s+--([a-z_0-9]+) \(", r.stdout + r.stderr, re.M))


def timing_args(build):
    """(the coordinator arguments for COORDINATOR_TIMINGS, the flags skipped)."""
    known = coordinator_flags(build)
    args, skipped = [], []
    for name, value in COORDINATOR_TIMINGS:
        if name in known:
            args += [f"--{name}", value]
        else:
            skipped.append(f"--{name}")
    return args, skipped


def free_port_range(count=10):
    """The first port of `count` consecutive loopback ports that bind now."""
    for _ in range(200):
        base = random.randrange(20000, 30000 - count)
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def binaries_origin(build):
    """One line: where the binaries come from (source tree, commit, build time)."""
    source = "?"
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    source = line.split("=", 1)[1].strip()
    except OSError:
        pass
    mtime = os.path.getmtime(os.path.join(build, "services/clmae-coordinator"))
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime))
    commit = "?"
    if source != "?":
        # The newest commit of the source tree older than the binary (HEAD
        # may have moved on since the build), and whether the tree differs.
        r = subprocess.run(["git", "-C", source, "log", "-1", "--format=%h %s",
                            f"--before=@{int(mtime)}"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            commit = r.stdout.strip()[:80]
            head = subprocess.run(["git", "-C", source, "log", "-1", "--format=%h"],
                                  capture_output=True, text=True).stdout.strip()
            if head and not commit.startswith(head):
                commit += f" (HEAD is {head} now)"
            dirty = subprocess.run(["git", "-C", source, "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True)
            if dirty.stdout.strip():
                commit += ", uncommitted changes in the tree"
    return (f"{os.path.abspath(build)}: coordinator built {built} from {source}, "
            f"last commit before the build {commit}")


class Monitor(threading.Thread):
    """Polls the jobs it is given; keeps (time, job id, job or None)."""

    def __init__(self, cluster, interval=0.3):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval = interval
        self.jobs = []
        self.timeline = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def watch(self, job_id):
        with self.lock:
            if job_id not in self.jobs:
                self.jobs.append(job_id)

    def run(self):
        while not self.stopping.is_set():
            with self.lock:
                jobs = list(self.jobs)
            for job_id in jobs:
                job = self.cluster.get(job_id)
                with self.lock:
                    self.timeline.append((time.monotonic(), job_id, job))
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(10)

    def entries(self, job_id, since=0.0):
        with self.lock:
            return [(t, j) for t, i, j in self.timeline if i == job_id and t >= since and j]

    def first(self, job_id, predicate, since=0.0):
        """The time of the first snapshot after `since` that satisfies `predicate`."""
        for t, job in self.entries(job_id, since):
            if predicate(job):
                return t
        return None

    def failure_messages(self, job_id):
        seen = []
        for _, job in self.entries(job_id):
            m = job.get("failure_message")
            if m and m not in seen:
                seen.append(m)
        return seen

    def workers_used(self, job_id):
        return {r.get("worker_id") for _, job in self.entries(job_id)
                for r in job.get("placement", {}).get("ranks", [])}

    def max_step(self, job_id, below_attempt=None):
        steps = [step_of(job) for _, job in self.entries(job_id)
                 if below_attempt is None or attempt_of(job) < below_attempt]
        return max(steps, default=0)


def step_of(job):
    return int((job or {}).get("progress", {}).get("step", 0))


def attempt_of(job):
    return int((job or {}).get("attempt", 1))


class Cluster:
    """A coordinator and two one-slot CPU agents under `folder`, with the
    chaos timings and a master port range of its own."""

    def __init__(self, build, folder, coordinator_args=(), agents=WORKERS):
        self.build = build
        self.folder = folder
        self.timings, self.skipped_flags = timing_args(build)
        self.port_base = free_port_range()
        self.service = Service(build, folder, coordinator_args=[
            *self.timings, "--master_port_range", f"{self.port_base}-{self.port_base + 9}",
            *coordinator_args])
        self.agent_names = agents
        self.monitor = Monitor(self)
        self.killed_orphans = {}

    @property
    def state_dir(self):
        return os.path.join(self.folder, "state")

    def start(self, agents=True):
        self.service.start_coordinator()
        if agents:
            for name in self.agent_names:
                self.service.start_agent(name)
            self.service.wait_workers(len(self.agent_names))
        self.monitor.start()

    # clmaectl, tolerant of a coordinator that is away

    def ctl(self, *args, timeout="5s"):
        """(exit code, stdout, stderr); exit 3 when the coordinator is away."""
        try:
            return self.service.ctl(*args, "--timeout", timeout, check_exit=False, timeout=60)
        except subprocess.TimeoutExpired:
            return 124, "", "clmaectl timed out"

    def get(self, job_id):
        code, out, _ = self.ctl("get", job_id, "-o", "json", timeout="2s")
        if code != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def wait(self, job_id, predicate, timeout):
        """The job once `predicate` holds, or the last one seen (None if never)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is not None:
                last = job
                if predicate(job):
                    return job
            time.sleep(0.25)
        return last

    def submit(self, name, steps=STEPS, request_id=None, **spec):
        spec.setdefault("model", MODEL)
        spec.setdefault("batch_size", 32)
        spec.setdefault("synthetic_size", 512)
        spec.setdefault("log_every", 1)
        spec.setdefault("evaluate", False)
        path = write_spec(self.folder, name, steps, CHECKPOINT_EVERY, **spec)
        args = ["submit", "-f", path, "-o", "json"] + (["--request-id", request_id]
                                                         if request_id else [])
        code, out, err = self.ctl(*args)
        if code != 0:
            raise RuntimeError(f"submit {name} exited {code}: {out}{err}")
        job_id = json.loads(out)["id"]
        self.monitor.watch(job_id)
        return job_id

    def workers(self):
        code, out, _ = self.ctl("workers", "-o", "json")
        if code != 0:
            return None
        data = json.loads(out)
        return data.get("workers", []) if isinstance(data, dict) else data

    def full_checkpoints(self, job_id):
        """[(step, sha256, size, final)] of the job's committed full checkpoints."""
        code, out, _ = self.ctl("checkpoints", job_id, "--kind", "full", "-o", "json")
        if code != 0:
            return []
        data = json.loads(out)
        if isinstance(data, dict):
            data = data.get("checkpoints", [])
        return sorted((int(c["metadata"].get("step", 0)), c["metadata"].get("sha256", ""),
                       int(c["metadata"].get("size_bytes", 0)), bool(c["metadata"].get("final")))
                      for c in data)

    def blob_path(self, sha256):
        """The store's file of a digest (<data_dir>/checkpoints/blobs/ab/abcd...)."""
        root = os.path.join(self.state_dir, "checkpoints", "blobs")
        direct = os.path.join(root, sha256[:2], sha256)
        if os.path.exists(direct):
            return direct
        for dirpath, _, files in os.walk(root):
            if sha256 in files:
                return os.path.join(dirpath, sha256)
        return None

    def events(self, job_id=None):
        """[(job id, attempt, to_state, message)] of the job store's event
        table, read directly (read-only) for diagnostics: why each attempt
        ended. Empty when the store cannot be read (its schema is the
        coordinator's own)."""
        path = os.path.join(self.state_dir, "coordinator.db")
        if not os.path.exists(path):
            return []
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT job_id, attempt, to_state, message FROM events "
                                   "ORDER BY seq").fetchall()
            finally:
                con.close()
        except sqlite3.Error:
            return []
        return [row for row in rows if job_id is None or row[0] == job_id]

    def attempt_failures(self, job_id=None):
        """[(job id, attempt, message)] of the events that ended an attempt
        (to RESTARTING) or the job (to FAILED)."""
        return [(j, a, m) for j, a, state, m in self.events(job_id)
                if state in (STATE_RESTARTING, STATE_FAILED)]

    # processes

    def trainers(self, job_id=None, rank=None):
        """pid -> argv of this cluster's clmae-train processes (of `job_id`,
        with RANK=`rank`)."""
        def match(argv):
            if not any(a.startswith(self.folder + "/") for a in argv):
                return False
            return job_id is None or job_id in argv
        found = processes("clmae-train", match)
        if rank is None:
            return found
        return {pid: argv for pid, argv in found.items() if rank_of_pid(pid) == rank}

    def kill_coordinator(self):
        self.service.coordinator.kill()
        self.service.coordinator.wait()

    def restart_coordinator(self):
        self.service.start_coordinator()

    def kill_agent(self, name):
        agent = self.service.agents[name]
        agent.kill()
        agent.wait()

    def orphans(self):
        return self.trainers()

    def reap_orphans(self):
        """SIGKILLs (after SIGCONT) what `orphans` finds; returns it."""
        found = self.orphans()
        for pid in found:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        self.killed_orphans.update(found)
        return found

    def stop(self):
        self.monitor.stop() if self.monitor.is_alive() else None
        # A SIGSTOPped trainer must be able to act on its agent's SIGTERM.
        for pid in self.trainers():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.service.stop()

    # the ranks' logs

    def rank_logs(self, job_id, rank=0):
        """attempt -> the path of that attempt's rank log, over every agent."""
        out = {}
        for name in self.agent_names:
            base = os.path.join(self.folder, name, job_id)
            if not os.path.isdir(base):
                continue
            for entry in os.listdir(base):
                m = re.fullmatch(r"attempt-(\d+)", entry)
                path = os.path.join(base, entry, f"rank-{rank}.log")
                if m and os.path.exists(path):
                    out[int(m.group(1))] = path
        return out

    def log_tail(self, job_id, lines=15):
        text = []
        for rank in (0, 1):
            for attempt, path in sorted(self.rank_logs(job_id, rank).items()):
                with open(path, errors="replace") as f:
                    text.append(f"--- {path}\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(text)


def rank_of_pid(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"RANK="):
                    return int(item[5:])
    except (OSError, ValueError):
        pass
    return None


STEP_LINE = re.compile(r"^step (\d+)/", re.M)
RESUMED_LINE = re.compile(r"resumed from (\S+) at step (\d+)")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def steps_logged(path):
    """The highest `step N/` line of a rank log (0 if none)."""
    return max((int(s) for s in STEP_LINE.findall(read(path))), default=0)


def resumed_from(path):
    """(file, step) an attempt resumed from, (None, 0) for a start from scratch."""
    m = RESUMED_LINE.search(read(path))
    return (m.group(1), int(m.group(2))) if m else (None, 0)
