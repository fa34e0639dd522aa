#!/usr/bin/env python3
"""Monitoring end to end: a real Prometheus (Debian's `prometheus`) scraping
a live clmae job, with the alert rules of deploy/prometheus loaded.

  1. clmae-coordinator and two clmae-worker agents (one CPU slot each) on
     free ports, each with its metrics on a free port, and the agents'
     trainers on --trainer_metrics_port_base ports;
  2. a 2-rank job on a tiny model and synthetic data, long enough to be
     scraped (it is cancelled once the checks are done), checkpointing
     every few iterations so that its checkpoint age exists, and
     evaluating k-NN quality every few epochs so that the quality panel
     has data;
  3. prometheus with deploy/prometheus/prometheus-demo.yml, its ports
     swapped for this run's and its intervals for 1 s, and
     deploy/prometheus/rules/clmae-alerts.yml;
  4. every scrape target is up; then, through the HTTP API (/api/v1/query):
     - every PromQL expr of the Grafana dashboard (deploy/grafana/dashboards/
       clmae.json), with $job = this job and $__rate_interval = 10s, returns
       data;
     - every alerting rule, as loaded by that server (/api/v1/rules): its
       expr is evaluated, and since an alert's expr returns nothing while
       all is well (no failed job, no NaN loss...), each metric selector
       inside it (the comparison stripped: e.g. `clmae_job_state{state=
       "failed"}` of `clmae_job_state{state="failed"} == 1`), narrowed to
       this job for the per-job families, must return data;
     - no alert fires for this healthy run.
  A query without data is retried until a deadline (some series appear
  only after a log step, a second mask evaluation or the first
  checkpoint); the failure names each query and the series it lacks.

Exits 77 (ctest SKIP_RETURN_CODE) when the prometheus server is missing.
CLMAE_KEEP_TEST_FILES=1 keeps the logs and Prometheus' configuration.

usage: monitoring_test.py BUILD_DIR
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "deploy"))
import clmae_deploy as cd  # noqa: E402
from harness import TestFailure, check, free_port, logger, run_in_temp_dir  # noqa: E402,F401

CLIENT_TOKEN = "client-token-for-the-monitoring-test"
WORKER_TOKEN = "worker-token-for-the-monitoring-test"
RATE_INTERVAL = "10s"
# How long the queries may take to all return data once the job runs.
QUERY_DEADLINE_S = 60
# The per-job families: their selectors are narrowed to this test's job.
PER_JOB = re.compile(r'^clmae_(job|trainer)_')


log = logger("monitoring_test")


class Processes:
    def __init__(self, work):
        self.work = work
        self.procs = {}
        self.logs = []

    def spawn(self, name, argv, env=None):
        path = os.path.join(self.work, f"{name}.log")
        out = open(path, "a")
        self.logs.append(path)
        self.procs[name] = subprocess.Popen(argv, env=dict(os.environ, **(env or {})), stdout=out,
                                            stderr=subprocess.STDOUT, cwd=self.work)
        return self.procs[name]

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                continue
            text = self.dump()
            hint = ""
            if re.search(r"(?i)unknown (command line )?flag.*metrics", text):
                hint = ("\n(these binaries have no metrics flags: they predate docs/metrics.md; "
                        "rebuild from a tree with the metrics)")
            raise TestFailure(f"{name} exited with {p.returncode}:\n{text}{hint}")

    def dump(self, lines=25):
        text = []
        # The ranks' logs (the agents write them under their work folders).
        ranks = sorted(os.path.join(d, f) for d, _, fs in os.walk(self.work) for f in fs
                       if re.fullmatch(r"rank-\d+\.log", f))
        for path in self.logs + ranks:
            try:
                with open(path) as f:
                    text.append(f"--- {path}\n" + "".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(text)

    def stop(self):
        # Agents first (they stop their trainers), then the coordinator,
        # then prometheus.
        order = sorted(self.procs, key=lambda n: {"coordinator": 1, "prometheus": 2}.get(n, 0))
        for name in order:
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, **params):
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise TestFailure(f"GET {path} {params}: {body}")
        return body["data"]

    def query(self, expr):
        """The result list of an instant query (raises on a PromQL error)."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
            raise TestFailure(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [data["result"]]
        return data["result"]


def write_spec(work):
    path = os.path.join(work, "monitored.yaml")
    with open(path, "w") as f:
        f.write(f"""name: monitored
model: {{preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,
        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}}
data: {{kind: SYNTHETIC, synthetic_size: 64, num_workers: 1}}
optimizer: {{warmup_epochs: 1}}
train: {{epochs: 1000, max_steps: 20000, batch_size: 8, threads: 1, log_every: 2}}
eval: {{enabled: true, every_epochs: 5, periodic_train_limit: 32, periodic_test_limit: 16,
       knn_k: 3, probe_epochs: 0}}
output: {{dir: out, checkpoint_every: 10, export_safetensors: false}}
resources: {{world_size: 2, device_kind: cpu, max_restarts: 0}}
""")
    return path


def prometheus_config(work, ports):
    """deploy/prometheus/prometheus-demo.yml with this run's ports, 1 s
    intervals and the rules by absolute path."""
    with open(cd.DEMO_CONFIG) as f:
        text = f.read()
    for demo_port, port in ports.items():
        check(f"127.0.0.1:{demo_port}" in text, f"prometheus-demo.yml has no target 127.0.0.1:{demo_port}")
        text = text.replace(f"'127.0.0.1:{demo_port}'", f"'127.0.0.1:{port}'")
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text = re.sub(rf'^(\s*{key}:)\s*\S+', rf'\1 1s', text, flags=re.M)
    check("rules/clmae-alerts.yml" in text, "prometheus-demo.yml does not load rules/clmae-alerts.yml")
    text = text.replace("rules/clmae-alerts.yml", cd.RULES)
    path = os.path.join(work, "prometheus.yml")
    with open(path, "w") as f:
        f.write(text)
    return path


def narrowed(selector, job):
    """A selector of a per-job family with job="<id>" added."""
    name = cd.SELECTOR.match(selector).group(1)
    if not PER_JOB.match(name):
        return selector
    matchers = selector[len(name):].strip("{}")
    matchers = ",".join(m for m in matchers.split(",") if m.strip() and not m.strip().startswith("job"))
    return f'{name}{{job="{job}"{"," + matchers if matchers else ""}}}'


def run(build, work):
    binaries = {n: os.path.join(build, p) for n, p in (
        ("coordinator", "services/clmae-coordinator"), ("worker", "worker/agent/clmae-worker"),
        ("train", "worker/train/clmae-train"), ("ctl", "services/clmaectl/clmaectl"))}
    for b in binaries.values():
        check(os.access(b, os.X_OK), f"{b} is missing: build first")

    procs = Processes(work)
    grpc = f"127.0.0.1:{free_port()}"
    # The demo configuration's ports -> this run's.
    ports = {9400: free_port(), 9401: free_port(), 9402: free_port(), 9410: free_port(), 9420: free_port()}
    ctl_env = dict(os.environ, CLMAE_ADDRESS=grpc, CLMAE_TOKEN=CLIENT_TOKEN)

    def ctl(*args):
        r = subprocess.run([binaries["ctl"], *args], env=ctl_env, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"clmaectl {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r.stdout

    job_id = None
    try:
        procs.spawn("coordinator", [
            binaries["coordinator"], "--listen", grpc, "--data_dir", os.path.join(work, "state"),
            "--metrics_listen", f"127.0.0.1:{ports[9400]}", "--heartbeat_interval", "1s",
            "--lease", "8s", "--hang_timeout", "2m", "--cancel_grace", "5s", "--shutdown_grace", "2s"],
            {"CLMAE_CLIENT_TOKEN": CLIENT_TOKEN, "CLMAE_WORKER_TOKEN": WORKER_TOKEN})
        for name, metrics, trainers in (("agent-a", ports[9401], ports[9410]),
                                        ("agent-b", ports[9402], ports[9420])):
            procs.spawn(name, [
                binaries["worker"], "--coordinator", grpc, "--worker_id", name,
                "--advertise_address", "127.0.0.1", "--gpus", "none", "--cpu_slots", "1",
                "--work_dir", os.path.join(work, name), "--cancel_grace", "5s",
                "--reconnect_backoff_max", "1s", "--metrics_port", str(metrics),
                "--trainer_metrics_port_base", str(trainers), "--trainer", binaries["train"]],
                {"CLMAE_TOKEN": WORKER_TOKEN})
        config = prometheus_config(work, ports)
        prom_port = free_port()
        procs.spawn("prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
        prom = Prometheus(prom_port)

        deadline = time.monotonic() + 40
        while True:
            procs.check_alive()
            r = subprocess.run([binaries["ctl"], "workers", "-o", "json"], env=ctl_env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and r.stdout.count("READY") >= 2:
                break
            check(time.monotonic() < deadline, "two agents did not register within 40 s:\n" + procs.dump())
            time.sleep(0.3)

        job_id = json.loads(ctl("submit", "-f", write_spec(work), "-o", "json"))["id"]
        log(f"job {job_id} submitted; prometheus on :{prom_port}")

        # Until both ranks and the coordinator's per-job series are scraped.
        deadline = time.monotonic() + 90
        while True:
            procs.check_alive()
            try:
                ranks = prom.query(f'clmae_trainer_step{{job="{job_id}"}}')
                steps = prom.query(f'clmae_job_step{{job="{job_id}"}}')
            except (OSError, TestFailure):
                ranks, steps = [], []
            if len(ranks) >= 2 and steps:
                break
            if time.monotonic() > deadline:
                targets = prom.get("/api/v1/targets")["activeTargets"]
                down = [f"{t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}"
                        for t in targets]
                raise TestFailure(f"job {job_id}: 2 ranks and the coordinator's clmae_job_step not scraped "
                                  f"within 90 s (ranks: {len(ranks)}, job step: {len(steps)}).\nTargets:\n  "
                                  + "\n  ".join(down) + "\n" + procs.dump())
            time.sleep(0.5)
        log(f"both ranks scraped (step {steps[0]['value'][1]})")

        # Every target up.
        targets = prom.get("/api/v1/targets")["activeTargets"]
        down = [f"{t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}"
                for t in targets if t["health"] != "up"]
        check(len(targets) == len(ports) and not down,
              f"{len(targets)} targets, expected {len(ports)}; not up:\n  " + "\n  ".join(down))

        dashboard = [(f"dashboard panel {q['panel']!r} query {q['ref']}", cd.substitute(q["expr"], job_id, RATE_INTERVAL))
                     for q in cd.queries(cd.load_dashboard())]
        groups = prom.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        check(rules, "prometheus loaded no rules")
        rule_checks = []
        for r in rules:
            what = f"alert {r['name']}" if r["type"] == "alerting" else f"record {r['name']}"
            if r["type"] == "recording":
                rule_checks.append((what, r["query"]))
            for s in cd.selectors(r["query"]):
                rule_checks.append((f"{what}: series {s}", narrowed(s, job_id)))

        # Ask until every query returns data or the deadline passes.
        pending = dashboard + rule_checks
        deadline = time.monotonic() + QUERY_DEADLINE_S
        while pending:
            procs.check_alive()
            pending = [(what, expr) for what, expr in pending if not prom.query(expr)]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        if pending:
            lines = []
            for what, expr in pending:
                missing = [s for s in cd.selectors(expr) if not prom.query(narrowed(s, job_id))]
                lines.append(f"  {what}\n    {expr}\n    series without data: "
                             + (", ".join(missing) if missing else "(none: the whole expr is empty)"))
            raise TestFailure(f"{len(pending)} of {len(dashboard) + len(rule_checks)} queries returned no data "
                              f"for job {job_id} within {QUERY_DEADLINE_S} s:\n" + "\n".join(lines))
        log(f"{len(dashboard)} dashboard queries and {len(rule_checks)} rule series checks returned data")

        # The alert exprs themselves evaluate (no PromQL error), and none
        # fires for a healthy run.
        for r in rules:
            prom.query(r["query"])
        firing = [f"{a['labels'].get('alertname')} {a['labels']}" for a in prom.get("/api/v1/alerts")["alerts"]
                  if a.get("state") == "firing"]
        check(not firing, "alerts firing for a healthy run:\n  " + "\n  ".join(firing))
        log(f"{sum(r['type'] == 'alerting' for r in rules)} alert rules evaluated; none firing")

        ctl("cancel", job_id)
        log("all passed")
    finally:
        procs.stop()


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if shutil.which("prometheus") is None:
        print("[monitoring_test] SKIPPED: the prometheus server is not installed "
              "(Debian package `prometheus`; scripts/install-deps.sh --debian)")
        return cd.SKIP
    started = time.monotonic()
    code = run_in_temp_dir("monitoring_test", run, os.path.abspath(argv[1]))
    if code == 0:
        log(f"{time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
