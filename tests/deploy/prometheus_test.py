#!/usr/bin/env python3
"""The Prometheus side of deploy/ checked with Debian's promtool and
prometheus (package `prometheus`, pinned in deps.lock):

  1. `promtool check config` on prometheus-demo.yml and
     prometheus-kubernetes.yml (Debian builds Prometheus without the
     Kubernetes service discovery, so there the kubernetes_sd_configs
     blocks are swapped for static_configs first: every other part, the
     relabelling included, is still checked);
  2. `promtool check rules` and `promtool test rules` on
     rules/clmae-alerts.yml and rules/clmae-alerts.test.yml, and every
     alert of the rules has a unit test where it fires and one where it
     stays silent;
  3. every PromQL expr of the Grafana dashboard parses (as a recording rule
     checked by promtool, its Grafana variables substituted);
  4. the Kubernetes relabelling keeps the right pods and ports: a real
     prometheus runs the Kubernetes configuration with static targets
     carrying the __meta_kubernetes_* labels of made-up pods, and its
     /api/v1/targets must show exactly the coordinator's, the agents' and
     the trainers' metrics ports under their scrape jobs.

Exits 77 (ctest SKIP_RETURN_CODE) when promtool is not installed
(scripts/install-deps.sh --debian installs it); part 4 is skipped, with a
note, when only the prometheus server is missing.

usage: prometheus_test.py
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clmae_deploy as cd  # noqa: E402


class TestFailure(Exception):
    pass


def log(message):
    print(f"[prometheus_test] {message}", flush=True)


def promtool(*args, cwd=None):
    r = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    if r.returncode != 0:
        raise TestFailure(f"promtool {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


K8S_SD = "    kubernetes_sd_configs:\n      - role: pod\n"


def without_kubernetes_sd(text, static_block="    static_configs:\n      - targets: []\n"):
    """The Kubernetes configuration with each pod discovery replaced."""
    n = text.count(K8S_SD)
    if n == 0:
        raise TestFailure(f"{cd.KUBERNETES_CONFIG}: no `kubernetes_sd_configs: [role: pod]` blocks to replace")
    return text.replace(K8S_SD, static_block)


def check_configs(work):
    out = promtool("check", "config", cd.DEMO_CONFIG)
    log(f"check config prometheus-demo.yml: {out.strip().splitlines()[-1].strip()}")
    r = subprocess.run(["promtool", "check", "config", cd.KUBERNETES_CONFIG],
                       capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        log("check config prometheus-kubernetes.yml: valid")
        return
    if "kubernetes_sd_configs not found" not in r.stdout + r.stderr:
        raise TestFailure(f"promtool check config prometheus-kubernetes.yml:\n{r.stdout}{r.stderr}")
    # Debian's build: check the rest with the discovery swapped out. The copy
    # sits beside rules/ so that its relative rule_files resolve.
    copy = os.path.join(work, "prometheus-kubernetes.yml")
    with open(cd.KUBERNETES_CONFIG) as f:
        text = without_kubernetes_sd(f.read())
    with open(copy, "w") as f:
        f.write(text)
    shutil.copytree(os.path.join(cd.PROMETHEUS_DIR, "rules"), os.path.join(work, "rules"))
    promtool("check", "config", copy)
    log("check config prometheus-kubernetes.yml: valid (kubernetes_sd_configs as static_configs: "
        "this promtool has no Kubernetes discovery)")


def alert_names(rules_text):
    return re.findall(r'^\s*-\s*alert:\s*(\S+)', rules_text, re.M)


def unit_test_cases(test_text):
    """alertname -> (firing cases, silent cases) in a promtool test file."""
    cases = {}
    lines = test_text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'^\s*alertname:\s*(\S+)', line)
        if not m:
            continue
        rest = [l for l in lines[i + 1:] if l.strip() and not l.strip().startswith("#")]
        exp = rest[0].strip() if rest else ""
        firing, silent = cases.get(m.group(1), (0, 0))
        if re.fullmatch(r'exp_alerts:\s*\[\s*\]', exp):
            silent += 1
        elif exp.startswith("exp_alerts:"):
            firing += 1
        cases[m.group(1)] = (firing, silent)
    return cases


def check_rules():
    out = promtool("check", "rules", cd.RULES)
    log(f"check rules: {out.strip().splitlines()[-1].strip()}")
    out = promtool("test", "rules", os.path.basename(cd.RULES_TEST), cwd=os.path.dirname(cd.RULES_TEST))
    log(f"test rules: {out.strip().splitlines()[-1].strip()}")
    with open(cd.RULES) as f:
        alerts = alert_names(f.read())
    with open(cd.RULES_TEST) as f:
        cases = unit_test_cases(f.read())
    if not alerts:
        raise TestFailure(f"no alerts in {cd.RULES}")
    untested = [a for a in alerts if cases.get(a, (0, 0))[0] == 0 or cases.get(a, (0, 0))[1] == 0]
    if untested:
        raise TestFailure("alerts without both a firing and a silent unit test: "
                          + ", ".join(f"{a} {cases.get(a, (0, 0))}" for a in untested))
    log(f"{len(alerts)} alerts, each with firing and silent unit tests")


def check_dashboard_exprs(work):
    queries = cd.queries(cd.load_dashboard())
    rules = [{"record": f"dashboard:query_{i}:check", "expr": cd.substitute(q["expr"], "some-job")}
             for i, q in enumerate(queries)]
    path = os.path.join(work, "dashboard-exprs.rules.yml")
    with open(path, "w") as f:
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)  # JSON is YAML
    r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        text = r.stdout + r.stderr
        bad = sorted({int(i) for i in re.findall(r'dashboard:query_(\d+):check', text)})
        named = "\n".join(f"  {queries[i]['panel']} {queries[i]['ref']}: {queries[i]['expr']}" for i in bad)
        raise TestFailure(f"dashboard exprs that do not parse:\n{text}\n{named}")
    log(f"{len(queries)} dashboard exprs parse")


# Made-up pods for the relabelling check: (address, labels, expected job or
# None when the pod/port must not be scraped).
POD = "__meta_kubernetes_pod_"
FAKE_TARGETS = [
    ("10.0.0.1:9400", {"component": "coordinator", "port": "metrics"}, "clmae-coordinator"),
    ("10.0.0.1:50051", {"component": "coordinator", "port": "grpc"}, None),
    ("10.0.0.2:9401", {"component": "worker", "port": "metrics"}, "clmae-agent"),
    ("10.0.0.2:9410", {"component": "worker", "port": "trainer-0"}, "clmae-trainer"),
    ("10.0.0.2:9411", {"component": "worker", "port": "trainer-1"}, "clmae-trainer"),
    ("10.0.0.3:9401", {"component": "worker", "port": "metrics", "scrape": "false"}, None),
    ("10.0.0.4:9401", {"component": "worker", "port": "metrics", "phase": "Pending"}, None),
    ("10.0.0.5:9400", {"component": "coordinator", "port": "metrics", "name": "other-app"}, None),
]


def fake_static_block():
    lines = ["    static_configs:"]
    for address, spec, _ in FAKE_TARGETS:
        labels = {
            "__meta_kubernetes_namespace": "clmae",
            POD + "name": "pod-" + address.split(":")[0].replace(".", "-"),
            POD + "node_name": "node-" + address.split(".")[3].split(":")[0],
            POD + "phase": spec.get("phase", "Running"),
            POD + "label_app_kubernetes_io_name": spec.get("name", "clmae"),
            POD + "label_app_kubernetes_io_component": spec["component"],
            POD + "container_port_name": spec["port"],
        }
        if "scrape" in spec:
            labels[POD + "annotation_prometheus_io_scrape"] = spec["scrape"]
        lines.append(f"      - targets: ['{address}']")
        lines.append("        labels:")
        lines += [f"          {k}: '{v}'" for k, v in labels.items()]
    return "\n".join(lines) + "\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_kubernetes_relabelling(work):
    if shutil.which("prometheus") is None:
        log("note: no prometheus server on PATH; the Kubernetes relabelling check is skipped")
        return
    config_dir = os.path.join(work, "relabel")
    os.makedirs(config_dir)
    shutil.copytree(os.path.join(cd.PROMETHEUS_DIR, "rules"), os.path.join(config_dir, "rules"))
    with open(cd.KUBERNETES_CONFIG) as f:
        text = without_kubernetes_sd(f.read(), fake_static_block())
    text = re.sub(r'scrape_interval: \S+', 'scrape_interval: 5m', text, count=1)
    text = re.sub(r'scrape_timeout: \S+', 'scrape_timeout: 1s', text, count=1)
    config = os.path.join(config_dir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(text)
    port = free_port()
    logf = open(os.path.join(work, "prometheus.log"), "w")
    server = subprocess.Popen(["prometheus", f"--config.file={config}",
                               f"--storage.tsdb.path={os.path.join(work, 'data')}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=logf, stderr=subprocess.STDOUT)
    try:
        got = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets?state=active",
                                            timeout=5) as r:
                    active = json.load(r)["data"]["activeTargets"]
                got = {(t["labels"]["job"], t["labels"]["instance"]): t["labels"] for t in active}
                if len(got) >= sum(1 for *_, job in FAKE_TARGETS if job):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        if got is None:
            with open(os.path.join(work, "prometheus.log")) as f:
                raise TestFailure(f"prometheus with the Kubernetes relabelling did not answer:\n{f.read()[-3000:]}")
        want = {(job, address) for address, _, job in FAKE_TARGETS if job}
        if set(got) != want:
            raise TestFailure(f"Kubernetes relabelling: scraped targets {sorted(got)}, expected {sorted(want)}")
        for (job, address), labels in got.items():
            for key in ("namespace", "pod", "node"):
                if not labels.get(key):
                    raise TestFailure(f"target {job} {address} lacks the `{key}` label: {labels}")
            if job == "clmae-trainer" and labels.get("slot") != str(int(address.rsplit(":")[1]) - 9410):
                raise TestFailure(f"trainer target {address}: slot label {labels.get('slot')!r}")
        log(f"Kubernetes relabelling: {len(want)} of {len(FAKE_TARGETS)} made-up pod ports kept, "
            "under the right scrape jobs")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        logf.close()


def main():
    if shutil.which("promtool") is None:
        print("[prometheus_test] SKIPPED: promtool not found (Debian package `prometheus`; "
              "scripts/install-deps.sh --debian installs it)")
        return cd.SKIP
    work = tempfile.mkdtemp(prefix="clmae-prometheus-test-")
    try:
        os.makedirs(os.path.join(work, "config"))
        check_configs(os.path.join(work, "config"))
        check_rules()
        check_dashboard_exprs(work)
        check_kubernetes_relabelling(work)
        log("all passed")
        return 0
    except TestFailure as e:
        print(f"[prometheus_test] FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
