#!/usr/bin/python3
"""The authorization matrix against a real clmae-coordinator process.

    auth_matrix_test.py CLMAE_COORDINATOR PROTO_DIR

Starts the coordinator with a tokens file of SHA-256 digests (the operator
"ops", the users "alice" and "bob", the nodes "node-1" and "node-2"), plays
node-1's agent over Attach, has alice submit a one-rank CPU job that is
placed on node-1, and takes the task credential that came with the
assignment. Then every RPC is called by every kind of caller:

    no token, a wrong token, alice (the job's owner), bob, ops,
    node-1, node-2, the task credential, and that credential after its task
    ended (the job cancelled)

and each answer is compared with the EXPECTED table below. Prints the
number of cells and exits non-zero on the first difference, naming the RPC,
the caller, the expected and the actual code.
"""

import hashlib
import os
import queue
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_client_test import (  # noqa: E402  (the shared process and stub helpers)
    RPC_TIMEOUT, Coordinator, check, generate_stubs, make_spec, metadata, run_main)

import grpc  # noqa: E402

TOKENS = {
    "alice": ("user", "alice-token"),
    "bob": ("user", "bob-token"),
    "ops": ("operator", "ops-token"),
    "node-1": ("worker", "node-1-token"),
    "node-2": ("worker", "node-2-token"),
}
CALLERS = ["none", "wrong", "alice", "bob", "ops", "node-1", "node-2", "task", "ended task"]

OK, DENIED, UNAUTH, NOT_FOUND, INVALID, ENDED = (
    "OK", "PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND", "INVALID_ARGUMENT",
    "FAILED_PRECONDITION")


def row(alice, bob, ops, node1, node2, task):
    """Codes for the nine callers: the first two are always UNAUTHENTICATED,
    an ended task credential is always FAILED_PRECONDITION (the trainer should
    stop)."""
    return [UNAUTH, UNAUTH, alice, bob, ops, node1, node2, task, ENDED]


# Alice's job J runs on node-1. OK = allowed; NOT_FOUND / INVALID_ARGUMENT in
# an allowed cell is what the call itself answers (no checkpoint yet, no such
# node, an upload without bytes).
EXPECTED = {
    "SubmitJob":                   row(OK, OK, OK, DENIED, DENIED, DENIED),
    "GetJob J":                    row(OK, DENIED, OK, DENIED, DENIED, DENIED),
    "ListJobs (own)":              row(OK, OK, OK, DENIED, DENIED, DENIED),
    "ListJobs all_owners":         row(DENIED, DENIED, OK, DENIED, DENIED, DENIED),
    "WatchJob J":                  row(OK, DENIED, OK, DENIED, DENIED, DENIED),
    "CancelJob (an alice job)":    row(OK, DENIED, OK, DENIED, DENIED, DENIED),
    "ListCheckpoints J":           row(OK, DENIED, OK, DENIED, DENIED, DENIED),
    "DownloadCheckpoint J":        row(NOT_FOUND, DENIED, NOT_FOUND, DENIED, DENIED, DENIED),
    "ListWorkers":                 row(DENIED, DENIED, OK, DENIED, DENIED, DENIED),
    "DrainWorker (unknown node)":  row(DENIED, DENIED, NOT_FOUND, DENIED, DENIED, DENIED),
    "Attach as node-2":            row(DENIED, DENIED, DENIED, DENIED, OK, DENIED),
    "ReportProgress J rank 0":     row(DENIED, DENIED, DENIED, OK, DENIED, OK),
    "UploadCheckpoint J":          row(DENIED, DENIED, DENIED, INVALID, DENIED, INVALID),
    "FetchCheckpoint J":           row(DENIED, DENIED, DENIED, NOT_FOUND, DENIED, DENIED),
}


def log(message):
    print(f"auth_matrix_test: {message}", flush=True)


def write_tokens(path):
    with open(path, "w") as f:
        for name, (role, token) in TOKENS.items():
            f.write(f"{name} {role} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")
    os.chmod(path, 0o600)


def code_of(call):
    try:
        call()
        return OK
    except grpc.RpcError as error:
        return error.code().name


def run(binary, proto_dir, work_dir):
    generate_stubs(proto_dir, os.path.join(work_dir, "stubs"))
    from clmae.v1 import checkpoint_pb2, coordinator_pb2, coordinator_pb2_grpc
    from clmae.v1 import job_spec_pb2, worker_control_pb2, worker_control_pb2_grpc

    tokens_file = os.path.join(work_dir, "tokens")
    write_tokens(tokens_file)
    coordinator = Coordinator(binary, work_dir, tokens_file=tokens_file)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{coordinator.port}")
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        client = coordinator_pb2_grpc.CoordinatorStub(channel)
        workers = worker_control_pb2_grpc.WorkerControlStub(channel)
        as_ = {name: metadata(token) for name, (_, token) in TOKENS.items()}

        def register(worker_id):
            return worker_control_pb2.AgentMessage(register=worker_control_pb2.Register(
                worker_id=worker_id, address="127.0.0.1", cpu_slots=1))

        # node-1's agent, for as long as the test runs.
        outbound = queue.Queue()
        outbound.put(register("node-1"))

        def agent_messages():
            while (message := outbound.get()) is not None:
                yield message

        attach = workers.Attach(agent_messages(), metadata=as_["node-1"], timeout=120.0)
        inbound = iter(attach)
        check(next(inbound).WhichOneof("msg") == "registered", "node-1 did not register")
        job = client.SubmitJob(coordinator_pb2.SubmitJobRequest(
            spec=make_spec(job_spec_pb2, "matrix")), metadata=as_["alice"], timeout=RPC_TIMEOUT)
        reply = next(inbound)
        check(reply.WhichOneof("msg") == "assign" and reply.assign.task.job_id == job.id,
              f"alice's job should be assigned to node-1, got:\n{reply}")
        task = reply.assign.task
        check(task.task_token.startswith(f"task:{job.id}:"),
              f"the assignment carries no task credential:\n{task}")
        as_["task"] = as_["ended task"] = metadata(task.task_token)
        as_["none"] = ()
        as_["wrong"] = metadata("not-a-token")
        log(f"alice's job {job.id} runs on node-1; the trainer's credential came with it")

        def unary(method, request):
            return lambda md: method(request, metadata=md, timeout=RPC_TIMEOUT)

        def watch(md):
            stream = client.WatchJob(coordinator_pb2.WatchJobRequest(job_id=job.id),
                                     metadata=md, timeout=RPC_TIMEOUT)
            next(stream)  # the snapshot, or the refusal
            stream.cancel()

        def cancel(md):
            own = client.SubmitJob(coordinator_pb2.SubmitJobRequest(
                spec=make_spec(job_spec_pb2, "to-cancel")), metadata=as_["alice"],
                timeout=RPC_TIMEOUT)
            client.CancelJob(coordinator_pb2.CancelJobRequest(job_id=own.id), metadata=md,
                             timeout=RPC_TIMEOUT)

        def download(md):
            for _ in client.DownloadCheckpoint(
                    checkpoint_pb2.DownloadCheckpointRequest(job_id=job.id), metadata=md,
                    timeout=RPC_TIMEOUT):
                pass

        def attach_node2(md):
            done = threading.Event()

            def messages():
                yield register("node-2")
                done.wait(RPC_TIMEOUT)

            stream = workers.Attach(messages(), metadata=md, timeout=RPC_TIMEOUT)
            try:
                first = next(stream)
                check(first.WhichOneof("msg") == "registered", f"unexpected reply {first}")
            finally:
                done.set()
                stream.cancel()

        def upload(md):
            metadata_msg = checkpoint_pb2.UploadCheckpointRequest(
                metadata=checkpoint_pb2.CheckpointMetadata(
                    job_id=job.id, attempt=task.attempt, kind=checkpoint_pb2.CHECKPOINT_KIND_FULL))
            workers.UploadCheckpoint(iter([metadata_msg]), metadata=md, timeout=RPC_TIMEOUT)

        def fetch(md):
            for _ in workers.FetchCheckpoint(checkpoint_pb2.FetchCheckpointRequest(
                    job_id=job.id, id="ck-" + "a" * 20), metadata=md, timeout=RPC_TIMEOUT):
                pass

        calls = {
            "SubmitJob": lambda md: client.SubmitJob(coordinator_pb2.SubmitJobRequest(
                spec=make_spec(job_spec_pb2, "extra")), metadata=md, timeout=RPC_TIMEOUT),
            "GetJob J": unary(client.GetJob, coordinator_pb2.GetJobRequest(job_id=job.id)),
            "ListJobs (own)": unary(client.ListJobs, coordinator_pb2.ListJobsRequest()),
            "ListJobs all_owners": unary(client.ListJobs,
                                         coordinator_pb2.ListJobsRequest(all_owners=True)),
            "WatchJob J": watch,
            "CancelJob (an alice job)": cancel,
            "ListCheckpoints J": unary(client.ListCheckpoints,
                                       checkpoint_pb2.ListCheckpointsRequest(job_id=job.id)),
            "DownloadCheckpoint J": download,
            "ListWorkers": unary(client.ListWorkers, coordinator_pb2.ListWorkersRequest()),
            "DrainWorker (unknown node)": unary(
                client.DrainWorker, coordinator_pb2.DrainWorkerRequest(worker_id="no-such")),
            "Attach as node-2": attach_node2,
            "ReportProgress J rank 0": unary(
                workers.ReportProgress, worker_control_pb2.ReportProgressRequest(
                    job_id=job.id, attempt=task.attempt, rank=0)),
            "UploadCheckpoint J": upload,
            "FetchCheckpoint J": fetch,
        }
        check(set(calls) == set(EXPECTED), "every RPC of the table has a call")

        cells = 0
        for phase_callers in (CALLERS[:-1], CALLERS[-1:]):
            if phase_callers == ["ended task"]:
                client.CancelJob(coordinator_pb2.CancelJobRequest(job_id=job.id),
                                 metadata=as_["alice"], timeout=RPC_TIMEOUT)
                log(f"cancelled {job.id}: its task credential should stop working")
            for rpc, call in calls.items():
                for caller in phase_callers:
                    want = EXPECTED[rpc][CALLERS.index(caller)]
                    got = code_of(lambda: call(as_[caller]))
                    check(got == want, f"{rpc} by {caller}: expected {want}, got {got}")
                    cells += 1
        outbound.put(None)
        attach.cancel()
        allowed = sum(1 for codes in EXPECTED.values() for c in codes
                      if c not in (UNAUTH, DENIED, ENDED))
        log(f"{cells} cells ({len(EXPECTED)} RPCs x {len(CALLERS)} callers) as expected: "
            f"{allowed} allowed, {cells - allowed} refused")
        check(coordinator.stop() == 0, "clmae-coordinator did not exit 0 on SIGTERM")
    except Exception:
        sys.stderr.write(f"--- clmae-coordinator output ---\n{coordinator.output()}--- end ---\n")
        raise
    finally:
        coordinator.kill()


if __name__ == "__main__":
    sys.exit(run_main("auth_matrix_test", run, sys.argv))
