"""What the deploy tests share: where deploy/ lives, the Grafana dashboard's
panels and PromQL queries, and Grafana's variables substituted the way
Grafana would (Python standard library only).

Used by tests/deploy/*_test.py and tests/integration/monitoring_test.py.
"""

import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
PROMETHEUS_DIR = os.path.join(DEPLOY, "prometheus")
RULES = os.path.join(PROMETHEUS_DIR, "rules", "clmae-alerts.yml")
RULES_TEST = os.path.join(PROMETHEUS_DIR, "rules", "clmae-alerts.test.yml")
DEMO_CONFIG = os.path.join(PROMETHEUS_DIR, "prometheus-demo.yml")
KUBERNETES_CONFIG = os.path.join(PROMETHEUS_DIR, "prometheus-kubernetes.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "dashboards", "clmae.json")

# The row whose panels show one job (selected by $job); the other row shows
# the cluster.
JOB_ROW_PREFIX = "Job"

# ctest's SKIP_RETURN_CODE for these tests.
SKIP = 77

# A clmae metric name with its label matchers, if any: `clmae_job_step`,
# `clmae_job_loss{job="$job",term!="mae"}`.
SELECTOR = re.compile(r'\b(clmae_[A-Za-z0-9_]+)(\{[^}]*\})?')


def load_dashboard(path=DASHBOARD):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels_with_rows(dashboard):
    """(row title or None, panel) for every non-row panel, in order; panels
    of a collapsed row (nested under it) count as that row's."""
    out = []
    row = None
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = panel.get("title", "")
            for child in panel.get("panels", []):
                out.append((row, child))
        else:
            out.append((row, panel))
    return out


def is_job_row(row_title):
    return row_title is not None and row_title.startswith(JOB_ROW_PREFIX)


def queries(dashboard):
    """Every target with an expr: dicts with row, panel (title), ref, expr."""
    out = []
    for row, panel in panels_with_rows(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append({"row": row, "panel": panel.get("title", f"id {panel.get('id')}"),
                            "ref": target.get("refId", "?"), "expr": target["expr"]})
    return out


def substitute(expr, job, rate_interval="10s"):
    """expr with Grafana's variables replaced as Grafana would for a single
    selected job: $job / ${job}, $__rate_interval, $__interval, $__range."""
    expr = expr.replace("${job}", job).replace("$job", job)
    for name, value in (("__rate_interval", rate_interval), ("__interval", "2s"),
                        ("__range", "5m")):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def variables(expr):
    """The Grafana variables an expr uses (names without the $)."""
    return set(re.findall(r'\$\{?([A-Za-z_][A-Za-z0-9_]*)', expr))


def selectors(expr):
    """The distinct metric selectors of a PromQL expr: 'name{matchers}'."""
    seen = []
    for name, matchers in SELECTOR.findall(expr):
        s = name + (matchers or "")
        if s not in seen:
            seen.append(s)
    return seen


def metric_names(expr):
    return {name for name, _ in SELECTOR.findall(expr)}
