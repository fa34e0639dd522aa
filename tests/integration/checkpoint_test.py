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

usage: checkpoint_test.py BUILD_DIR PYTHON_WITH_SAFETENSORS
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


def run(build, python, work):
    service = Service(build, work)
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
        log("all passed")
    finally:
        service.stop()


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    return run_in_temp_dir("checkpoint_test", run, os.path.abspath(argv[1]), argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
