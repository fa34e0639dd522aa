"""The chaos scenarios (docs/reliability.md). Each takes a `Context` and
fills a `Result`: what it did, how long detection took, the outcome and the
checks of its goal. The runner (chaos.py) starts nothing itself: a scenario
gets its cluster from `ctx.cluster()`, and the runner stops it, looks for
orphans and removes what the scenario mounted."""

import json
import os
import random
import re
import signal
import socket
import threading
import time

from cluster import (CHECKPOINT_EVERY, FAILED, STEPS, SUCCEEDED, TERMINAL, attempt_of,
                     resumed_from, short_state, step_of, steps_logged, write_spec)

RESTARTING = "JOB_STATE_RESTARTING"


class Result:
    def __init__(self, name, title):
        self.name = name
        self.title = title
        self.action = ""
        self.detection = "n/a"
        self.outcome = ""
        self.checks = []  # (ok, text)
        self.notes = []
        self.seconds = 0.0

    def check(self, ok, text):
        self.checks.append((bool(ok), text))
        return bool(ok)

    @property
    def met(self):
        return bool(self.checks) and all(ok for ok, _ in self.checks)

    def unmet(self):
        return [text for ok, text in self.checks if not ok]

    def as_dict(self):
        return {"name": self.name, "title": self.title, "action": self.action,
                "detection": self.detection, "outcome": self.outcome, "goal_met": self.met,
                "checks": [{"ok": ok, "text": t} for ok, t in self.checks],
                "notes": self.notes, "seconds": round(self.seconds, 1)}


def terminal(job):
    return job is not None and job.get("state") in TERMINAL


def failed_attempt(a0):
    """True once the job shows that attempt `a0` failed."""
    return lambda j: attempt_of(j) > a0 or j.get("state") in (RESTARTING, FAILED)


def seconds(t):
    return f"{t:.1f} s"


def outcome_text(job):
    if job is None:
        return "job not found"
    text = (f"{short_state(job.get('state'))} at attempt {attempt_of(job)} "
            f"(restarts {int(job.get('restarts', 0))}")
    if int(job.get("node_requeues", 0)):
        text += f", node requeues {int(job['node_requeues'])}"
    if int(job.get("preemptions", 0)):
        text += f", preemptions {int(job['preemptions'])}"
    text += ")"
    if job.get("failure_message"):
        text += f": {job['failure_message']}"
    return text


def progress_lost(ctx, job_id, job):
    """(steps lost, how): the furthest step any earlier attempt reached
    against the step the final attempt resumed from."""
    final = attempt_of(job)
    if final == 1:
        return 0, "no restart"
    logs = ctx.c.rank_logs(job_id, 0)
    reached = max([steps_logged(p) for a, p in logs.items() if a < final] +
                  [ctx.c.monitor.max_step(job_id, below_attempt=final)])
    if final not in logs:
        return None, f"attempt {final}'s rank-0 log not found"
    _, resumed = resumed_from(logs[final])
    lost = reached - resumed
    return lost, (f"attempt {final} resumed from step {resumed}, step {reached} had been reached: "
                  f"{lost} step{'' if lost == 1 else 's'} lost")


def judge(ctx, r, job_id, job, cause=None, allowance=CHECKPOINT_EVERY, waited=None):
    """The common goal: SUCCEEDED (losing at most `allowance` steps), or
    FAILED with a message matching `cause` (None: FAILED does not do)."""
    r.outcome = outcome_text(job)
    if job is None:
        r.check(False, f"the acknowledged job {job_id} is gone")
        return
    state = job.get("state")
    if state == SUCCEEDED:
        r.check(True, "SUCCEEDED")
        lost, how = progress_lost(ctx, job_id, job)
        r.check(lost is not None and lost <= allowance,
                f"progress lost {lost} steps (at most {allowance}): {how}")
        r.outcome += f"; {how}" if attempt_of(job) > 1 else "; no restart"
    elif state == FAILED and cause:
        r.check(re.search(cause, job.get("failure_message", ""), re.I),
                f"FAILED with a message naming the cause (/{cause}/)")
    elif state == FAILED:
        r.check(False, "FAILED, but this fault must not fail the job")
    elif state not in TERMINAL:
        r.check(False, f"still {short_state(state)}"
                       + (f" {waited} s after the fault" if waited else "") + " (goal: a final state)")
    else:
        r.check(False, f"ended {short_state(state)}")


def wait_step(ctx, r, job_id, step, timeout=90):
    """The job once rank 0 reported `step`; None (and a failed check) if it did not."""
    job = ctx.c.wait(job_id, lambda j: step_of(j) >= step or terminal(j), timeout)
    if job is None or terminal(job) or step_of(job) < step:
        r.check(False, f"the job did not reach step {step} before the fault: {outcome_text(job)}")
        return None
    return job


def step_now(ctx, job_id, job):
    """The step the current attempt has reached: rank 0's log is ahead of the
    progress the coordinator last heard."""
    log = ctx.c.rank_logs(job_id, 0).get(attempt_of(job))
    return max(step_of(job), steps_logged(log) if log else 0)


def detection(ctx, job_id, t_fault, a0):
    t = ctx.c.monitor.first(job_id, failed_attempt(a0), since=t_fault)
    return seconds(t - t_fault) if t else "not detected"


def one_trainer(ctx, r, job_id, rank):
    pids = ctx.c.trainers(job_id, rank=rank)
    if len(pids) != 1:
        r.check(False, f"expected one trainer of rank {rank}, found {pids}")
        return None
    return next(iter(pids))


# 1 ------------------------------------------------------------------------

def trainer_kill(ctx, r):
    c = ctx.cluster()
    job_id = c.submit("trainer-kill")
    job = wait_step(ctx, r, job_id, 20)
    pid = job and one_trainer(ctx, r, job_id, 1)
    if not pid:
        return
    worker = job["placement"]["ranks"][1]["worker_id"]
    os.kill(pid, signal.SIGKILL)
    t = time.monotonic()
    r.action = f"kill -9 of rank 1's trainer (on {worker}) at step {step_now(ctx, job_id, job)}/{STEPS}"
    job = c.wait(job_id, terminal, 120)
    r.detection = detection(ctx, job_id, t, 1)
    judge(ctx, r, job_id, job, cause=r"rank 1\b.*(signal|kill|exit)", waited=120)


# 2 ------------------------------------------------------------------------

def agent_kill(ctx, r):
    c = ctx.cluster()
    job_id = c.submit("agent-kill")
    job = wait_step(ctx, r, job_id, 20)
    if not job:
        return
    worker = job["placement"]["ranks"][0]["worker_id"]
    c.kill_agent(worker)
    t = time.monotonic()
    step = step_now(ctx, job_id, job)
    time.sleep(2)
    c.service.start_agent(worker)
    r.action = (f"kill -9 of {worker} (rank 0's agent) at step {step}/{STEPS}; "
                f"restarted 2 s later")
    job = c.wait(job_id, terminal, 120)
    r.detection = detection(ctx, job_id, t, 1)
    judge(ctx, r, job_id, job, cause=rf"{worker}|agent|lost|heartbeat", waited=120)


# 3 ------------------------------------------------------------------------

def coordinator_kill_at(ctx, r, job_id, down):
    """kill -9 of the coordinator, `down` seconds away, restarted on the
    same data folder and port; the recovery time and the job's end."""
    c = ctx.c
    before = c.get(job_id) or {}
    c.kill_coordinator()
    step = step_now(ctx, job_id, before)
    before.setdefault("progress", {})["step"] = step
    time.sleep(down)
    c.restart_coordinator()
    t_up = time.monotonic()
    t = c.monitor.first(job_id, lambda j: step_of(j) > step or terminal(j), since=t_up)
    deadline = time.monotonic() + 60
    while t is None and time.monotonic() < deadline:
        time.sleep(0.3)
        t = c.monitor.first(job_id, lambda j: step_of(j) > step or terminal(j), since=t_up)
    r.detection = (f"progress again {seconds(t - t_up)} after the restart" if t
                   else "no progress after the restart")
    job = c.wait(job_id, terminal, 150)
    judge(ctx, r, job_id, job, cause=r"coordinator", waited=150)
    if job and attempt_of(job) > 1:
        # Not part of the goal, but worth knowing: the crash cost an attempt.
        first = c.rank_logs(job_id, 0).get(1)
        reached = steps_logged(first) if first else 0
        r.notes.append(f"the coordinator's restart cost the job a restart (attempt "
                       f"{attempt_of(job)}); attempt 1 had reached step {reached}/{STEPS}"
                       + (" (all of it: it finished while the coordinator was away)"
                          if reached >= STEPS else ""))
    return before


def coordinator_kill(ctx, r):
    c = ctx.cluster()
    job_id = c.submit("coordinator-kill")
    if not wait_step(ctx, r, job_id, 20):
        return
    before = coordinator_kill_at(ctx, r, job_id, 2.0)
    r.action = (f"kill -9 of the coordinator at step {step_of(before)}/{STEPS} "
                f"({short_state(before.get('state'))}); restarted 2 s later")


def coordinator_kill_random(ctx, r):
    rng = random.Random(ctx.seed)
    delay, down = rng.uniform(0.5, 10.0), rng.uniform(0.5, 3.0)  # the job runs ~12 s
    c = ctx.cluster()
    job_id = c.submit("coordinator-kill-random")
    time.sleep(delay)
    before = coordinator_kill_at(ctx, r, job_id, down)
    r.action = (f"seed {ctx.seed}: kill -9 of the coordinator {delay:.1f} s after the "
                f"submission (then {short_state((before or {}).get('state'))} at step "
                f"{step_of(before)}); restarted {down:.1f} s later")


# 4 ------------------------------------------------------------------------

def rank_stopped(ctx, r):
    c = ctx.cluster()
    job_id = c.submit("rank-stopped")
    job = wait_step(ctx, r, job_id, 15)
    pid = job and one_trainer(ctx, r, job_id, 1)
    if not pid:
        return
    worker = job["placement"]["ranks"][1]["worker_id"]
    os.kill(pid, signal.SIGSTOP)
    t = time.monotonic()
    r.action = f"SIGSTOP of rank 1's trainer (on {worker}) at step {step_now(ctx, job_id, job)}/{STEPS}"
    c.wait(job_id, lambda j: failed_attempt(1)(j) or terminal(j), 75)
    job = c.wait(job_id, terminal, 120)
    r.detection = detection(ctx, job_id, t, 1)
    messages = c.monitor.failure_messages(job_id)
    for m in [m for _, _, m in c.attempt_failures(job_id)] + [(job or {}).get("failure_message")]:
        if m and m not in messages:
            messages.append(m)
    naming = [m for m in messages if re.search(r"\brank 1\b", m) and worker in m]
    r.check(naming, f"a failure message names rank 1 and {worker} (seen: {messages or 'none'})")
    judge(ctx, r, job_id, job, cause=rf"rank 1\b.*{worker}|{worker}.*rank 1\b")
    if naming and naming[0] not in r.outcome:
        r.outcome += f" [attempt 1: {naming[0]}]"


# 5 ------------------------------------------------------------------------

def damage(path, how):
    size = os.path.getsize(path)
    if how == "corrupt":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        return f"flipped the byte at offset {size // 2} of"
    if how == "truncated":
        os.truncate(path, size // 2)
        return f"truncated to {size // 2} of {size} bytes"
    os.unlink(path)
    return "deleted"


def checkpoint_damaged(ctx, r, how):
    c = ctx.cluster()
    job_id = c.submit(f"checkpoint-{how}")
    job = wait_step(ctx, r, job_id, 20)
    pid = job and one_trainer(ctx, r, job_id, 0)
    if not pid:
        return
    # Rank 0 uploads: stop it first so no newer checkpoint lands after the damage.
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.5)
    fulls = [x for x in c.full_checkpoints(job_id) if not x[3]]
    if len(fulls) < 2:
        os.kill(pid, signal.SIGKILL)
        r.check(False, f"fewer than 2 committed checkpoints at step {step_of(job)}: {fulls}")
        return
    (newest, sha, _, _), (previous, _, _, _) = fulls[-1], fulls[-2]
    path = c.blob_path(sha)
    if not path:
        os.kill(pid, signal.SIGKILL)
        r.check(False, f"the blob of step {newest} ({sha}) is not under {c.state_dir}/checkpoints/blobs")
        return
    what = damage(path, how)
    os.kill(pid, signal.SIGKILL)
    t = time.monotonic()
    r.action = (f"{what} the blob of the newest full checkpoint (step {newest}; previous "
                f"{previous}), then kill -9 of rank 0 at step {step_now(ctx, job_id, job)}")
    job = c.wait(job_id, terminal, 150)
    r.detection = detection(ctx, job_id, t, 1)
    judge(ctx, r, job_id, job, cause=None, allowance=2 * CHECKPOINT_EVERY, waited=150)
    if job and job.get("state") == SUCCEEDED:
        final = attempt_of(job)
        log = c.rank_logs(job_id, 0).get(final)
        _, resumed = resumed_from(log) if log else (None, -1)
        r.check(resumed == previous or resumed == newest and final > 1,
                f"the last attempt resumed from step {resumed}; expected the previous checkpoint "
                f"(step {previous})")
        if resumed == newest:
            r.notes.append(f"resumed from step {newest}, the damaged checkpoint's step: "
                           "from an intact copy (an agent's cache)")


def checkpoint_corrupt(ctx, r):
    checkpoint_damaged(ctx, r, "corrupt")


def checkpoint_truncated(ctx, r):
    checkpoint_damaged(ctx, r, "truncated")


def checkpoint_missing(ctx, r):
    checkpoint_damaged(ctx, r, "missing")


# 6 ------------------------------------------------------------------------

def port_busy(ctx, r):
    c = ctx.cluster(start=False)
    holder = socket.socket()
    holder.bind(("0.0.0.0", c.port_base))
    holder.listen(16)
    ctx.cleanups.append(holder.close)
    c.start()
    job_id = c.submit("port-busy", steps=30)
    r.action = (f"a listening socket on 0.0.0.0:{c.port_base}, the start of the master port "
                f"range {c.port_base}-{c.port_base + 9}, for the whole job")
    t = time.monotonic()
    job = c.wait(job_id, terminal, 120)
    placed = {p for p in (j.get("placement", {}).get("master_port") for _, j in
                          c.monitor.entries(job_id)) if p}
    r.detection = f"ended {seconds(time.monotonic() - t)} after the submission; master ports {sorted(placed)}"
    judge(ctx, r, job_id, job, cause=rf"port|{c.port_base}|rendezvous")
    if job:
        r.check(int(job.get("restarts", 0)) == 0,
                f"restarts {int(job.get('restarts', 0))} (the busy port must not spend restarts)")


# 7 ------------------------------------------------------------------------

def drain_state(c, name):
    for w in c.workers() or []:
        if w.get("id") == name:
            return w.get("state", "")
    return "absent"


def drain_restart(ctx, r):
    c = ctx.cluster()
    code, out, err = c.ctl("drain", "agent-a", "--keep-jobs")
    r.check(code == 0, f"clmaectl drain agent-a --keep-jobs: exit {code} {out.strip()}{err.strip()}")
    c.service.coordinator.send_signal(signal.SIGTERM)
    c.service.coordinator.wait(30)
    c.restart_coordinator()
    t = time.monotonic()
    deadline = t + 30
    while time.monotonic() < deadline:
        listed = {w.get("id") for w in c.workers() or []}
        if {"agent-a", "agent-b"} <= listed:
            break
        time.sleep(0.3)
    r.detection = f"both agents listed again {seconds(time.monotonic() - t)} after the restart"
    state_after = drain_state(c, "agent-a")
    jobs = [c.submit(f"after-drain-{i}", steps=20, world_size=1) for i in (1, 2)]
    r.action = ("clmaectl drain agent-a --keep-jobs; coordinator restarted (SIGTERM); "
                "two 1-rank jobs submitted")
    ends = [c.wait(j, terminal, 100) for j in jobs]
    r.outcome = "; ".join(f"{short_state((e or {}).get('state'))} on "
                          f"{','.join(sorted(c.monitor.workers_used(j) - {None})) or 'nothing'}"
                          for j, e in zip(jobs, ends))
    r.outcome += f"; agent-a listed as {short_state(state_after).replace('WORKER_STATE_', '')}"
    for j, e in zip(jobs, ends):
        used = c.monitor.workers_used(j)
        r.check("agent-a" not in used, f"job {j} was placed on {sorted(used - {None})}: "
                                       "nothing may land on the drained agent-a")
        r.check(e is not None and e.get("state") == SUCCEEDED,
                f"job {j} ended {outcome_text(e)} (goal: SUCCEEDED on agent-b)")
    r.check("DRAINING" in state_after,
            f"clmaectl workers shows agent-a as {state_after} after the restart (goal: DRAINING)")


# 8 ------------------------------------------------------------------------

def mount_tmpfs(path, size):
    return os.system(f"mount -t tmpfs -o size={size} clmae-chaos {path} 2>/dev/null") == 0


def disk_full(ctx, r):
    c = ctx.cluster(start=False)
    store = os.path.join(c.state_dir, "checkpoints")
    os.makedirs(store, exist_ok=True)
    tmpfs = os.geteuid() == 0 and mount_tmpfs(store, "64m")
    if tmpfs:
        ctx.cleanups.append(lambda: os.system(f"umount -l {store}"))
        c.service.coordinator_args += ["--checkpoint_min_free_mb", "1"]
    else:
        # No tmpfs: refuse when the data folder's file system would keep
        # less than its free space now minus 16 MiB (the trainer's own
        # checkpoints land on the same disk: a few uploads fit). Other
        # writers on that disk move this.
        st = os.statvfs(c.state_dir)
        free_mb = st.f_bavail * st.f_frsize // (1 << 20)
        c.service.coordinator_args += ["--checkpoint_min_free_mb", str(free_mb - 16)]
        r.notes.append("no tmpfs (not root?): --checkpoint_min_free_mb = the disk's free space - 16 MiB; "
                       "other writers on that disk make this approximate")
    c.start()
    job_id = c.submit("disk-full")
    deadline = time.monotonic() + 60
    fulls = []
    while time.monotonic() < deadline and not fulls:
        fulls = c.full_checkpoints(job_id)
        time.sleep(0.2)
    if not fulls:
        r.check(False, "no checkpoint was committed within 60 s" +
                ("" if tmpfs else " (without a tmpfs: was the shared disk full already?)"))
        return
    step, _, size, _ = fulls[0]
    if tmpfs:
        st = os.statvfs(store)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        new = -(-(used + size * 3 // 2) // 4096) * 4096
        os.system(f"mount -o remount,size={new} {store}")
        r.action = (f"<data_dir>/checkpoints on a tmpfs, shrunk after the first checkpoint "
                    f"(step {step}, {size >> 10} KiB) to {new >> 10} KiB: room for 1.5 more")
    else:
        r.action = (f"--checkpoint_min_free_mb = the disk's free space - 16 MiB (first "
                    f"checkpoint: step {step})")
    t = time.monotonic()
    job = c.wait(job_id, terminal, 90)
    r.detection = (f"ended {seconds(time.monotonic() - t)} after the disk filled"
                   if terminal(job) else "not ended 90 s after the disk filled")
    judge(ctx, r, job_id, job, cause=r"disk|space|full|RESOURCE_EXHAUSTED|ENOSPC", allowance=10**9,
          waited=90)
    if job and job.get("state") == SUCCEEDED:
        code, out, _ = c.ctl("checkpoints", job_id, "--kind", "weights", "-o", "json")
        data = json.loads(out) if code == 0 else {}
        items = data.get("checkpoints", []) if isinstance(data, dict) else data
        r.check(any(i["metadata"].get("final") for i in items),
                "the final weights are stored (clmaectl checkpoints --kind weights)")


# 9 ------------------------------------------------------------------------

def submissions_in_flight(ctx, r):
    rng = random.Random(ctx.seed + 9)
    kill_after, down = rng.uniform(1.0, 3.0), rng.uniform(1.0, 2.5)
    c = ctx.cluster(agents=False)  # nothing runs the jobs: they stay PENDING
    spec = write_spec(c.folder, "in-flight", 50, CHECKPOINT_EVERY)  # one spec for all
    acked, failures, errors, retried = {}, {}, [], set()
    stop = threading.Event()

    def submitter():
        """Submits until told to stop; each request id until acknowledged."""
        i = 0
        while not stop.is_set():
            rid = f"chaos-{ctx.seed}-{i}"
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                code, out, err = c.ctl("submit", "-f", spec, "--request-id", rid, "-o", "json",
                                       timeout="2s")
                if code == 0:
                    acked[rid] = json.loads(out)["id"]
                    break
                failures[rid] = failures.get(rid, 0) + 1
                retried.add(rid)
                if code not in (3, 124):
                    errors.append(f"{rid}: exit {code} {err.strip()[:120]}")
                time.sleep(0.1)
            else:
                errors.append(f"{rid}: not acknowledged within 40 s")
            i += 1

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    time.sleep(kill_after)
    before = len(acked)
    c.kill_coordinator()
    time.sleep(down)
    c.restart_coordinator()
    time.sleep(3)
    stop.set()
    thread.join(60)
    r.action = (f"seed {ctx.seed}: a thread submitting one spec with request ids (retrying each "
                f"until acknowledged); kill -9 of the coordinator {kill_after:.1f} s in ({before} "
                f"acknowledged then), restarted {down:.1f} s later; 3 s more of submissions")
    r.detection = (f"{sum(failures.values())} failed calls, retried over {len(retried)} "
                   "request ids")
    missing = []
    for rid, job_id in acked.items():
        job = c.get(job_id)
        if job is None or job.get("request_id") != rid:
            missing.append(f"{rid} -> {job_id}")
    list_code, out, _ = c.ctl("list", "-o", "json", "--limit", "10000")
    listed = json.loads(out) if list_code == 0 else {}
    listed = listed.get("jobs", []) if isinstance(listed, dict) else listed
    by_rid = {}
    for job in listed:
        by_rid.setdefault(job.get("request_id"), []).append(job["id"])
    dups = {rid: ids for rid, ids in by_rid.items() if rid and len(ids) > 1}
    again = sorted(retried & set(acked))[:5] + [rid for rid in acked if rid not in retried][:3]
    changed = []
    for rid in again:
        code, out, _ = c.ctl("submit", "-f", spec, "--request-id", rid, "-o", "json")
        if code != 0 or json.loads(out)["id"] != acked[rid]:
            changed.append(rid)
    submitted = len(acked) + len(set(failures) - set(acked))
    r.outcome = (f"{len(acked)}/{submitted} acknowledged, {len(acked) - len(missing)} of them "
                 f"found after the restart; {len(listed)} jobs listed, {len(dups)} request ids "
                 "with more than one job")
    r.check(list_code == 0, "clmaectl list answered")
    r.check(not missing, f"every acknowledged submission exists (lost: {missing[:5]})")
    r.check(not dups, f"one job per request id (duplicated: {dict(list(dups.items())[:3])})")
    r.check(not changed, f"a retry with the same request id returns the same job "
                         f"({len(again)} tried; different: {changed})")
    r.check(not errors, f"every submission acknowledged, or refused only while the "
                        f"coordinator was away ({errors[:3]})")
    r.check(retried, "the kill landed among the submissions (some were retried)")


SCENARIOS = [
    ("trainer-kill", "1. kill -9 of a trainer", trainer_kill),
    ("agent-kill", "2. kill -9 of an agent (restarted)", agent_kill),
    ("coordinator-kill", "3a. kill -9 of the coordinator", coordinator_kill),
    ("coordinator-kill-random", "3b. kill -9 of the coordinator, seeded random point",
     coordinator_kill_random),
    ("rank-stopped", "4. SIGSTOP of a rank", rank_stopped),
    ("checkpoint-corrupt", "5a. corrupt checkpoint", checkpoint_corrupt),
    ("checkpoint-truncated", "5b. truncated checkpoint", checkpoint_truncated),
    ("checkpoint-missing", "5c. missing checkpoint", checkpoint_missing),
    ("port-busy", "6. busy rendezvous port", port_busy),
    ("drain-restart", "7. drain across a coordinator restart", drain_restart),
    ("disk-full", "8. disk fills during uploads", disk_full),
    ("submissions-in-flight", "9. submissions in flight during kill -9", submissions_in_flight),
]
