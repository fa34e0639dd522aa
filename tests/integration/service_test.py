#!/usr/bin/env python3
"""The whole service as processes: clmae-coordinator, two clmae-worker agents
with one CPU slot each, real clmae-train ranks (Gloo over loopback), driven
through clmaectl.

  1. a 2-rank job runs to SUCCEEDED, one rank on each agent;
  2. `kill -9` of a trainer mid-run: the attempt fails, the job is requeued
     and resumes from the newest checkpoint, and succeeds at attempt 2;
  3. `kill -9` of the coordinator mid-run: restarted on the same store and
     port, it reconciles with the re-attaching agents, the running job
     completes, and a job accepted before the crash is not lost.

usage: service_test.py BUILD_DIR
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TestFailure, check, free_port, logger, processes, run_in_temp_dir  # noqa: E402,F401

CLIENT_TOKEN = "client-token-for-the-service-test"
WORKER_TOKEN = "worker-token-for-the-service-test"


log = logger("service_test")


class Service:
    """A coordinator on a fixed port and two agents, all under `work`.

    `coordinator_args` are appended to the coordinator's command line at
    every (re)start, after the defaults (a flag given twice takes the later
    value); `agent_args` likewise to every agent's."""

    def __init__(self, build, work, coordinator_args=(), agent_args=()):
        self.build = build
        self.work = work
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.coordinator = None
        self.agents = {}
        self.logs = []
        self.coordinator_args = list(coordinator_args)
        self.agent_args = list(agent_args)

    def _spawn(self, name, argv, env, cwd=None):
        path = os.path.join(self.work, f"{name}.log")
        out = open(path, "a")
        self.logs.append(path)
        return subprocess.Popen(argv, env=dict(os.environ, **env), stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd or self.work)

    def start_coordinator(self):
        self.coordinator = self._spawn(
            "coordinator",
            [os.path.join(self.build, "services/clmae-coordinator"), "--listen", self.address,
             "--data_dir", os.path.join(self.work, "state"), "--heartbeat_interval", "1s",
             "--lease", "8s", "--hang_timeout", "2m", "--cancel_grace", "5s",
             "--shutdown_grace", "2s", "--metrics_listen", "127.0.0.1:0",
             *self.coordinator_args],
            {"CLMAE_CLIENT_TOKEN": CLIENT_TOKEN, "CLMAE_WORKER_TOKEN": WORKER_TOKEN})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            check(self.coordinator.poll() is None, "the coordinator exited:\n" + self.dump())
            if self.ctl("workers", check_exit=False)[0] == 0:
                return
            time.sleep(0.1)
        raise TestFailure("the coordinator did not answer within 30 s:\n" + self.dump())

    def start_agent(self, name, own_folder=False, cancel_grace="5s"):
        """With `own_folder`, the agent runs in (and its trainers write their
        relative outputs under) a folder of its own, as on separate machines.
        Starting a name again (after its agent died) reuses its folder and log."""
        folder = os.path.join(self.work, name)
        os.makedirs(folder, exist_ok=True)
        self.agents[name] = self._spawn(
            name,
            [os.path.join(self.build, "worker/agent/clmae-worker"), "--coordinator", self.address,
             "--worker_id", name, "--advertise_address", "127.0.0.1", "--gpus", "none",
             "--cpu_slots", "1",
             "--work_dir", os.path.join(folder, "work") if own_folder else folder,
             "--cancel_grace", cancel_grace, "--reconnect_backoff_max", "1s",
             "--metrics_port", "0", "--trainer_metrics_port_base", "-1",
             "--trainer", os.path.join(self.build, "worker/train/clmae-train"),
             *self.agent_args],
            {"CLMAE_TOKEN": WORKER_TOKEN}, cwd=folder if own_folder else None)

    def ctl(self, *args, check_exit=True, timeout=120):
        r = subprocess.run([os.path.join(self.build, "services/clmaectl/clmaectl"), *args],
                           env=dict(os.environ, CLMAE_ADDRESS=self.address, CLMAE_TOKEN=CLIENT_TOKEN),
                           capture_output=True, text=True, timeout=timeout)
        if check_exit and r.returncode != 0:
            # Say whether the coordinator is still running, and show its log.
            alive = ("running" if self.coordinator is not None and self.coordinator.poll() is None
                     else f"exited with {self.coordinator.poll() if self.coordinator else None}")
            raise TestFailure(f"clmaectl {' '.join(args)} exited {r.returncode}:\n"
                              f"{r.stdout}{r.stderr}(clmae-coordinator: {alive})\n" + self.dump())
        return r.returncode, r.stdout, r.stderr

    def job(self, job_id):
        return json.loads(self.ctl("get", job_id, "-o", "json")[1])

    def wait_workers(self, n):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for name, agent in self.agents.items():
                check(agent.poll() is None, f"{name} exited:\n" + self.dump())
            code, out, _ = self.ctl("workers", "-o", "json", check_exit=False)
            if code == 0 and out.count('"READY"') + out.count("WORKER_STATE_READY") >= n:
                return
            time.sleep(0.2)
        raise TestFailure(f"{n} agents did not register within 30 s:\n" + self.dump())

    def wait_job(self, job_id, predicate, what, timeout):
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(0.25)
        raise TestFailure(f"job {job_id}: {what} not reached in {timeout} s; last: "
                          f"{json.dumps(job)}\n" + self.dump())

    def submit(self, spec_path):
        return json.loads(self.ctl("submit", "-f", spec_path, "-o", "json")[1])["id"]

    def dump(self):
        text = []
        for path in self.logs:
            try:
                with open(path) as f:
                    text.append(f"--- {path}\n" + "".join(f.readlines()[-30:]))
            except OSError:
                pass
        return "\n".join(text)

    def stop(self):
        procs = list(self.agents.values()) + ([self.coordinator] if self.coordinator else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def trainer_pids(job_id):
    """pid -> argv of the clmae-train processes of `job_id`."""
    return processes("clmae-train", lambda argv: job_id in argv)


TINY_MODEL = ("{preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,\n"
              "        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}")


def write_spec(work, name, steps, checkpoint_every, world_size=2, max_restarts=2, batch_size=8,
               synthetic_size=64, log_every=5, evaluate=True, model=TINY_MODEL):
    """A synthetic-data CPU job spec in `work`; the keyword arguments change
    what the tests above need (their defaults are what those tests use)."""
    path = os.path.join(work, f"{name}.yaml")
    evaluation = "{enabled: true, probe_epochs: 0}" if evaluate else "{enabled: false}"
    with open(path, "w") as f:
        f.write(f"""name: {name}
model: {model}
data: {{kind: SYNTHETIC, synthetic_size: {synthetic_size}, num_workers: 1}}
optimizer: {{warmup_epochs: 1}}
train: {{epochs: 1000, max_steps: {steps}, batch_size: {batch_size}, threads: 1, log_every: {log_every}}}
eval: {evaluation}
output: {{dir: out/{name}, checkpoint_every: {checkpoint_every},
         export_safetensors: true}}
resources: {{world_size: {world_size}, device_kind: cpu, max_restarts: {max_restarts}}}
""")
    return path


def succeeded(job):
    return job["state"] == "JOB_STATE_SUCCEEDED"


def terminal(job):
    return job["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def step_of(job):
    return int(job.get("progress", {}).get("step", 0))


def run(build, work):
    service = Service(build, work)
    try:
        service.start_coordinator()
        service.start_agent("agent-a")
        service.start_agent("agent-b")
        service.wait_workers(2)

        log("1. a 2-rank job on two agents runs to SUCCEEDED")
        job_id = service.submit(write_spec(work, "plain-run", 30, 10))
        job = service.wait_job(job_id, terminal, "a terminal state", 240)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        workers = {r["worker_id"] for r in job["placement"]["ranks"]}
        check(workers == {"agent-a", "agent-b"}, f"ranks not on both agents: {workers}")
        check("knn_top1" in job.get("result", {}).get("metrics", {}), f"no k-NN result: {job}")
        check(step_of(job) == 30, f"progress step {step_of(job)}, expected 30")

        log("2. kill -9 of a trainer mid-run: requeued, resumed, SUCCEEDED at attempt 2")
        job_id = service.submit(write_spec(work, "killed-trainer", 400, 20))
        service.wait_job(job_id, lambda j: step_of(j) >= 40, "step 40", 240)
        pids = trainer_pids(job_id)
        check(len(pids) == 2, f"expected 2 trainers of {job_id}, found {pids}")
        victim = max(pids)  # either rank will do
        os.kill(victim, signal.SIGKILL)
        job = service.wait_job(job_id, lambda j: int(j.get("attempt", 1)) >= 2, "attempt 2", 60)
        job = service.wait_job(job_id, terminal, "a terminal state", 300)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        check(int(job["attempt"]) == 2, f"finished at attempt {job['attempt']}")
        logs = "".join(open(p).read() for p in service.logs)
        rank0_logs = [os.path.join(dp, f) for dp, _, fs in os.walk(work) for f in fs
                      if f == "rank-0.log" and job_id in dp and "attempt-2" in dp]
        resumed = any("resumed from" in open(p).read() for p in rank0_logs)
        check(resumed, f"attempt 2 did not resume from a checkpoint ({rank0_logs}):\n{logs[-3000:]}")

        log("3. kill -9 of the coordinator mid-run: restart, reconcile, no job lost")
        running = service.submit(write_spec(work, "survivor", 300, 50))
        service.wait_job(running, lambda j: step_of(j) >= 20, "step 20", 240)
        queued = service.submit(write_spec(work, "queued", 20, 0))  # waits: both slots busy
        check(service.job(queued)["state"] == "JOB_STATE_PENDING", "the second job should queue")
        service.coordinator.kill()
        service.coordinator.wait()
        time.sleep(2)  # the trainers go on without it
        service.start_coordinator()
        job = service.wait_job(running, terminal, "a terminal state", 300)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        check(int(job["attempt"]) == 1, f"the running job was restarted (attempt {job['attempt']})")
        job = service.wait_job(queued, terminal, "a terminal state", 240)
        check(succeeded(job), f"queued job ended {job['state']}\n" + service.dump())
        log("all passed")
    finally:
        service.stop()


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    return run_in_temp_dir("service_test", run, os.path.abspath(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
