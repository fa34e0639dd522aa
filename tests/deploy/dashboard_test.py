#!/usr/bin/env python3
"""Structure of the Grafana dashboard deploy/grafana/dashboards/clmae.json
(Python standard library only; no Grafana needed):

  - a `datasource` variable (type datasource, Prometheus) and a `job`
    variable (a Prometheus label_values query for the job label) exist;
  - every panel and every query names the data source `${datasource}`;
  - panel ids are unique, every non-row panel has at least one query with a
    PromQL expr, refIds are unique within a panel, panels fit the 24-column
    grid and do not overlap;
  - every query in the job row selects `$job`; no query in the cluster row
    does (it works with no job selected); no query uses another variable;
  - every metric an expr names is one of the families in docs/metrics.md
    (histograms with _bucket/_sum/_count), and every family this dashboard
    must show is shown.

usage: dashboard_test.py [DASHBOARD_JSON]
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clmae_deploy as cd  # noqa: E402

DATASOURCE_UID = "${datasource}"
ALLOWED_VARIABLES = {"job", "datasource", "__rate_interval", "__interval", "__range"}
METRICS_DOC = os.path.join(cd.ROOT, "docs", "metrics.md")

# The families the dashboard must show (issue 6): the cluster row's and the
# job row's.
REQUIRED = {
    "clmae_coordinator_jobs", "clmae_coordinator_queue_depth", "clmae_coordinator_workers",
    "clmae_coordinator_devices", "clmae_coordinator_submissions_total",
    "clmae_coordinator_restarts_total", "clmae_coordinator_failures_total",
    "clmae_coordinator_scheduling_latency_seconds_bucket",
    "clmae_coordinator_rpc_duration_seconds_bucket",
    "clmae_agent_trainers", "clmae_agent_connected", "clmae_agent_devices",
    "clmae_agent_trainer_exits_total", "clmae_agent_trainer_starts_total",
    "clmae_agent_restarts_total",
    "clmae_job_state", "clmae_job_curriculum_factor", "clmae_job_progress_ratio",
    "clmae_job_loss", "clmae_job_learning_rate", "clmae_job_images_per_second",
    "clmae_job_steps_per_second", "clmae_job_step", "clmae_job_restarts",
    "clmae_job_checkpoint_age_seconds", "clmae_job_knn_top1",
    "clmae_trainer_images_total", "clmae_trainer_step_phase_seconds_sum",
    "clmae_trainer_step_seconds_sum", "clmae_trainer_epoch",
    "clmae_trainer_mask_keep_score_mean", "clmae_trainer_mask_near_binary_ratio",
    "clmae_trainer_mask_overlap_ratio", "clmae_trainer_grad_norm",
    "clmae_trainer_device_memory_bytes", "clmae_trainer_checkpoint_uploads_total",
}


class Checker:
    def __init__(self):
        self.errors = []

    def check(self, condition, message):
        if not condition:
            self.errors.append(message)
        return condition


def documented_metrics():
    """Names a query may use: the families of docs/metrics.md, histograms
    expanded to their _bucket/_sum/_count series. None without the doc."""
    if not os.path.exists(METRICS_DOC):
        return None
    names = set()
    with open(METRICS_DOC, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\|\s*`(clmae_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|', line)
            if not m:
                continue
            name, kind = m.groups()
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
    return names


def is_datasource_var(ds):
    return isinstance(ds, dict) and ds.get("uid") == DATASOURCE_UID and \
        ds.get("type") in (None, "prometheus")


def check_variables(c, dash):
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if c.check(ds is not None, "no `datasource` variable"):
        c.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
                f"variable `datasource` must be type datasource, query prometheus: {ds}")
    job = variables.get("job")
    if c.check(job is not None, "no `job` variable"):
        c.check(job.get("type") == "query", f"variable `job` must be a query variable: {job}")
        c.check(is_datasource_var(job.get("datasource")),
                f"variable `job` must query the data source {DATASOURCE_UID}: {job.get('datasource')}")
        query = job.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        c.check(re.fullmatch(r'label_values\(\s*clmae_job_[a-z_]+\s*,\s*job\s*\)', text.strip()) is not None,
                f"variable `job` must be label_values(clmae_job_..., job), is {text!r}")
        c.check(not job.get("multi") and not job.get("includeAll"),
                "variable `job` selects one job (the job row's queries match job=\"$job\")")


def check_panels(c, dash):
    ids = []
    cells = {}
    rows = [p.get("title", "") for p in dash.get("panels", []) if p.get("type") == "row"]
    c.check(any(not cd.is_job_row(r) for r in rows), f"no cluster row (rows: {rows})")
    c.check(any(cd.is_job_row(r) for r in rows), f"no row titled '{cd.JOB_ROW_PREFIX} ...' (rows: {rows})")
    for p in dash.get("panels", []):
        ids.append(p.get("id"))
        for child in p.get("panels", []):
            ids.append(child.get("id"))
    dupes = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    c.check(not dupes, f"duplicate panel ids: {dupes}")
    c.check(None not in ids, "a panel without an id")

    for row, p in cd.panels_with_rows(dash):
        title = p.get("title", f"id {p.get('id')}")
        where = f"panel {title!r} (row {row!r})"
        c.check(row is not None, f"{where} is outside any row")
        c.check(is_datasource_var(p.get("datasource")),
                f"{where}: datasource must be {{type: prometheus, uid: {DATASOURCE_UID}}}, is {p.get('datasource')}")
        targets = p.get("targets", [])
        c.check(len(targets) >= 1, f"{where} has no query")
        refs = [t.get("refId") for t in targets]
        c.check(len(set(refs)) == len(refs), f"{where}: duplicate refIds {refs}")
        for t in targets:
            expr = t.get("expr", "")
            ref = t.get("refId")
            c.check(bool(expr.strip()), f"{where} query {ref} has no expr")
            c.check(is_datasource_var(t.get("datasource")),
                    f"{where} query {ref}: datasource must be {DATASOURCE_UID}, is {t.get('datasource')}")
            used = cd.variables(expr)
            c.check(used <= ALLOWED_VARIABLES, f"{where} query {ref} uses unknown variables {used - ALLOWED_VARIABLES}")
            if cd.is_job_row(row):
                # Every selector of a job panel filters on the job, so that no
                # other job's series leak into an aggregation.
                for s in cd.selectors(expr):
                    c.check(re.search(r'\bjob\s*=~?\s*"\$\{?job\}?"', s) is not None,
                            f"{where} query {ref}: selector {s} does not select job=\"$job\"")
            else:
                c.check("job" not in used, f"{where} query {ref}: a cluster panel depends on $job")
        g = p.get("gridPos", {})
        if c.check(all(k in g for k in "hwxy"), f"{where}: gridPos needs h, w, x, y: {g}"):
            c.check(g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24,
                    f"{where}: gridPos outside the 24 columns: {g}")
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    other = cells.get((x, y))
                    if other is not None:
                        c.check(False, f"{where} overlaps panel {other!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break


def check_metrics(c, dash):
    used = set()
    for q in cd.queries(dash):
        used |= cd.metric_names(q["expr"])
    documented = documented_metrics()
    if documented is not None:
        unknown = sorted(used - documented)
        c.check(not unknown, f"queries name metrics that docs/metrics.md does not: {unknown}")
    missing = sorted(REQUIRED - used)
    c.check(not missing, f"the dashboard shows none of: {missing}")
    terms = set()
    for q in cd.queries(dash):
        if "clmae_job_loss" in q["expr"]:
            if 'term!="mae"' in q["expr"]:
                terms |= {"masker_recon", "gauss", "kl", "div", "masker_total"}
            terms |= set(re.findall(r'term="([a-z_]+)"', q["expr"]))
    missing_terms = {"mae", "masker_recon", "gauss", "kl", "div", "masker_total"} - terms
    c.check(not missing_terms, f"loss terms without a panel: {sorted(missing_terms)}")


def main(argv):
    path = argv[1] if len(argv) > 1 else cd.DASHBOARD
    try:
        dash = cd.load_dashboard(path)
    except (OSError, ValueError) as e:
        print(f"[dashboard_test] FAILED: {path}: {e}", file=sys.stderr)
        return 1
    c = Checker()
    c.check(bool(dash.get("uid")) and bool(dash.get("title")), "the dashboard needs a uid and a title")
    check_variables(c, dash)
    check_panels(c, dash)
    check_metrics(c, dash)
    n = len(cd.panels_with_rows(dash))
    if c.errors:
        for e in c.errors:
            print(f"[dashboard_test] {e}", file=sys.stderr)
        print(f"[dashboard_test] FAILED: {len(c.errors)} problem(s) in {path}", file=sys.stderr)
        return 1
    print(f"[dashboard_test] {n} panels, {len(cd.queries(dash))} queries: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
