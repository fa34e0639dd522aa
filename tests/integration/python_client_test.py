#!/usr/bin/python3
"""A Python gRPC client against a real clmae-coordinator process.

    python_client_test.py CLMAE_COORDINATOR PROTO_DIR

Starts the coordinator on port 0 with a temporary data dir and client/worker
tokens, generates Python stubs from PROTO_DIR with the system protoc and
grpc_python_plugin into a temporary folder, then, as a client:

  * submits a one-rank CPU job on synthetic data (JobSpec built in Python),
    checks GetJob and ListJobs (state filter and label selector);
  * checks that a wrong token, no token and the worker token are refused;
  * checks that a bad spec is refused with INVALID_ARGUMENT naming the field;
  * plays a fake agent over WorkerControl.Attach (worker token): register with
    one CPU slot, receive the job's Assign, report RUNNING, ReportProgress as
    rank 0 for a few steps (the last one with a result), EXITED 0;
  * meanwhile a WatchJob stream in a second thread collects the updates; it
    must see the snapshot, the progress and the final SUCCEEDED event, and end
    by itself;

then stops the coordinator with SIGTERM and checks that it exits 0.

Needs Debian's python3-grpcio and python3-protobuf (deps.lock); run
scripts/install-deps.sh --debian if they are missing. Uses only the standard
library otherwise, and exits non-zero with a message on any failure.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import grpc
    import google.protobuf  # noqa: F401
except ImportError as error:
    print(
        f"python_client_test: FAILED: cannot import the Python gRPC packages ({error}).\n"
        "Install Debian's python3-grpcio and python3-protobuf as pinned in deps.lock:\n"
        "    scripts/install-deps.sh --debian\n"
        f"and run this test with the system Python (/usr/bin/python3), not a venv "
        f"(this run used {sys.executable}).",
        file=sys.stderr,
    )
    sys.exit(1)

CLIENT_TOKEN = "py-client-token"
WORKER_TOKEN = "py-worker-token"
RPC_TIMEOUT = 10.0  # seconds, every unary call
STEPS = (5, 10, 15, 20)
TOTAL_STEPS = 20


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def log(message):
    print(f"python_client_test: {message}", flush=True)


def generate_stubs(proto_dir, out_dir):
    protoc = shutil.which("protoc")
    plugin = "/usr/bin/grpc_python_plugin"
    check(protoc is not None, "protoc not found; run scripts/install-deps.sh --debian")
    check(os.access(plugin, os.X_OK),
          f"{plugin} not found (protobuf-compiler-grpc); run scripts/install-deps.sh --debian")
    protos = sorted(
        os.path.relpath(os.path.join(d, f), proto_dir)
        for d, _, files in os.walk(os.path.join(proto_dir, "clmae", "v1"))
        for f in files if f.endswith(".proto"))
    check(protos, f"no .proto files under {proto_dir}/clmae/v1")
    os.makedirs(out_dir, exist_ok=True)
    command = [protoc, f"-I{proto_dir}", f"--python_out={out_dir}",
               f"--grpc_python_out={out_dir}",
               f"--plugin=protoc-gen-grpc_python={plugin}"] + protos
    done = subprocess.run(command, capture_output=True, text=True)
    check(done.returncode == 0,
          f"protoc failed ({done.returncode}):\n{' '.join(command)}\n{done.stderr}")
    sys.path.insert(0, out_dir)


class Coordinator:
    """The clmae-coordinator process, its port and its captured output."""

    def __init__(self, binary, work_dir, tokens_file=None):
        """With `tokens_file`, the principals come from it alone; otherwise
        CLIENT_TOKEN and WORKER_TOKEN are the environment's shortcut tokens."""
        self.port_file = os.path.join(work_dir, "port")
        self.log_path = os.path.join(work_dir, "coordinator.log")
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLMAE_CLIENT_TOKEN", "CLMAE_WORKER_TOKEN")}
        auth = ["--tokens_file", tokens_file] if tokens_file else []
        if not tokens_file:
            env.update(CLMAE_CLIENT_TOKEN=CLIENT_TOKEN, CLMAE_WORKER_TOKEN=WORKER_TOKEN)
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--data_dir", os.path.join(work_dir, "state"),
             "--port_file", self.port_file, "--heartbeat_interval", "1s", "--lease", "30s",
             "--shutdown_grace", "2s", "--metrics_listen", "127.0.0.1:0"] + auth,
            env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.port = self._wait_for_port(30.0)

    def _wait_for_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise TestFailure(f"clmae-coordinator exited with {code} before serving:\n"
                                  f"{self.output()}")
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            time.sleep(0.05)
        raise TestFailure(f"clmae-coordinator wrote no --port_file in {timeout}s:\n"
                          f"{self.output()}")

    def output(self):
        self.log_file.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, timeout=20.0):
        """SIGTERM; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise TestFailure(f"clmae-coordinator did not exit within {timeout}s of SIGTERM:\n"
                              f"{self.output()}")

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def metadata(token):
    return (("authorization", f"Bearer {token}"),)


def expect_code(call, code, what, contains=None):
    try:
        call()
    except grpc.RpcError as error:
        check(error.code() == code,
              f"{what}: expected {code.name}, got {error.code().name}: {error.details()}")
        if contains is not None:
            check(contains in (error.details() or ""),
                  f"{what}: expected '{contains}' in the message, got: {error.details()}")
        return
    raise TestFailure(f"{what}: expected {code.name}, but the call succeeded")


def make_spec(job_spec_pb2, name):
    spec = job_spec_pb2.JobSpec(name=name)
    spec.labels["suite"] = "python-client"
    spec.model.preset = "tiny"
    spec.masking.mode = job_spec_pb2.MaskingSpec.CLMAE
    spec.data.kind = job_spec_pb2.DataSpec.SYNTHETIC
    spec.data.synthetic_size = 256
    spec.train.epochs = 1
    spec.optimizer.warmup_epochs = 0  # the default 40 must be below train.epochs
    spec.train.batch_size = 16
    spec.train.max_steps = TOTAL_STEPS
    spec.train.device = "cpu"
    spec.resources.world_size = 1
    spec.resources.device_kind = "cpu"
    spec.resources.max_restarts = 0
    return spec


def run(binary, proto_dir, work_dir):
    generate_stubs(proto_dir, os.path.join(work_dir, "stubs"))
    from clmae.v1 import coordinator_pb2, coordinator_pb2_grpc
    from clmae.v1 import job_pb2, job_spec_pb2, worker_pb2
    from clmae.v1 import worker_control_pb2, worker_control_pb2_grpc
    JobState = job_pb2.JobState
    log(f"stubs generated from {proto_dir}")

    coordinator = Coordinator(binary, work_dir)
    try:
        log(f"clmae-coordinator serving on port {coordinator.port}")
        channel = grpc.insecure_channel(f"127.0.0.1:{coordinator.port}")
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        client = coordinator_pb2_grpc.CoordinatorStub(channel)
        workers = worker_control_pb2_grpc.WorkerControlStub(channel)
        as_client = metadata(CLIENT_TOKEN)
        as_worker = metadata(WORKER_TOKEN)

        # --- Submit, get, list ----------------------------------------------
        spec = make_spec(job_spec_pb2, "py-client-job")
        job = client.SubmitJob(coordinator_pb2.SubmitJobRequest(spec=spec, request_id="py-1"),
                               metadata=as_client, timeout=RPC_TIMEOUT)
        check(job.id, "SubmitJob returned a job without an id")
        check(job.spec == spec, f"SubmitJob changed the spec:\n{job.spec}")
        check(job.state == JobState.JOB_STATE_PENDING,
              f"a job with no worker attached should be PENDING, is {JobState.Name(job.state)}")
        check(job.attempt == 1, f"attempt should be 1, is {job.attempt}")
        check(job.request_id == "py-1", f"request_id not kept: '{job.request_id}'")
        log(f"submitted job {job.id}")

        again = client.SubmitJob(coordinator_pb2.SubmitJobRequest(spec=spec, request_id="py-1"),
                                 metadata=as_client, timeout=RPC_TIMEOUT)
        check(again.id == job.id, f"a retried request_id created job {again.id}, not {job.id}")

        got = client.GetJob(coordinator_pb2.GetJobRequest(job_id=job.id), metadata=as_client,
                            timeout=RPC_TIMEOUT)
        check(got.id == job.id and got.spec == spec, f"GetJob returned another job:\n{got}")
        expect_code(lambda: client.GetJob(coordinator_pb2.GetJobRequest(job_id="no-such-job"),
                                          metadata=as_client, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.NOT_FOUND, "GetJob of an unknown id")

        listed = client.ListJobs(coordinator_pb2.ListJobsRequest(), metadata=as_client,
                                 timeout=RPC_TIMEOUT)
        check([j.id for j in listed.jobs] == [job.id],
              f"ListJobs should list exactly {job.id}, lists {[j.id for j in listed.jobs]}")
        pending = client.ListJobs(
            coordinator_pb2.ListJobsRequest(states=[JobState.JOB_STATE_PENDING],
                                            label_selector={"suite": "python-client"}),
            metadata=as_client, timeout=RPC_TIMEOUT)
        check([j.id for j in pending.jobs] == [job.id],
              "ListJobs(PENDING, suite=python-client) should list the job")
        running = client.ListJobs(
            coordinator_pb2.ListJobsRequest(states=[JobState.JOB_STATE_RUNNING]),
            metadata=as_client, timeout=RPC_TIMEOUT)
        check(len(running.jobs) == 0, "ListJobs(RUNNING) should list nothing yet")
        other_label = client.ListJobs(
            coordinator_pb2.ListJobsRequest(label_selector={"suite": "other"}),
            metadata=as_client, timeout=RPC_TIMEOUT)
        check(len(other_label.jobs) == 0, "ListJobs(suite=other) should list nothing")
        log("GetJob and ListJobs agree with the submission")

        # --- Auth and validation --------------------------------------------
        get = coordinator_pb2.GetJobRequest(job_id=job.id)
        expect_code(lambda: client.GetJob(get, metadata=metadata("wrong-token"),
                                          timeout=RPC_TIMEOUT),
                    grpc.StatusCode.UNAUTHENTICATED, "GetJob with a wrong token")
        expect_code(lambda: client.GetJob(get, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.UNAUTHENTICATED, "GetJob with no token")
        expect_code(lambda: client.SubmitJob(coordinator_pb2.SubmitJobRequest(spec=spec),
                                             metadata=metadata("wrong-token"),
                                             timeout=RPC_TIMEOUT),
                    grpc.StatusCode.UNAUTHENTICATED, "SubmitJob with a wrong token")
        expect_code(lambda: client.GetJob(get, metadata=as_worker, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.PERMISSION_DENIED, "GetJob with the worker token")
        expect_code(lambda: workers.ReportProgress(
                        worker_control_pb2.ReportProgressRequest(job_id=job.id, attempt=1),
                        metadata=as_client, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.PERMISSION_DENIED, "ReportProgress with the client token")
        bad = make_spec(job_spec_pb2, "Not_A_Valid_Name")
        expect_code(lambda: client.SubmitJob(coordinator_pb2.SubmitJobRequest(spec=bad),
                                             metadata=as_client, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.INVALID_ARGUMENT, "SubmitJob with a bad name", "name")
        listed = client.ListJobs(coordinator_pb2.ListJobsRequest(), metadata=as_client,
                                 timeout=RPC_TIMEOUT)
        check(len(listed.jobs) == 1, "a refused submission must not be stored")
        log("wrong/missing token -> UNAUTHENTICATED, wrong role -> PERMISSION_DENIED, "
            "bad name -> INVALID_ARGUMENT")

        # --- Watch in a second thread ---------------------------------------
        updates = []
        first_update = threading.Event()
        watch_done = threading.Event()
        watch_error = []
        watch = client.WatchJob(coordinator_pb2.WatchJobRequest(job_id=job.id),
                                metadata=as_client, timeout=60.0)

        def collect():
            try:
                for update in watch:
                    updates.append(update)
                    first_update.set()
            except grpc.RpcError as error:
                watch_error.append(error)
            finally:
                watch_done.set()

        watcher = threading.Thread(target=collect, name="watch", daemon=True)
        watcher.start()
        # The snapshot first, so that every later change is seen as an update.
        check(first_update.wait(RPC_TIMEOUT) and not watch_done.is_set(),
              f"WatchJob sent no snapshot: {watch_error and watch_error[0]}")

        # --- A fake agent over Attach ---------------------------------------
        outbound = queue.Queue()

        def agent_messages():
            while True:
                message = outbound.get()
                if message is None:
                    return
                yield message

        outbound.put(worker_control_pb2.AgentMessage(register=worker_control_pb2.Register(
            worker_id="py-agent", address="127.0.0.1", cpu_slots=1)))
        attach = workers.Attach(agent_messages(), metadata=as_worker, timeout=60.0)
        inbound = iter(attach)

        reply = next(inbound)
        check(reply.WhichOneof("msg") == "registered",
              f"the first answer on Attach should be `registered`, is:\n{reply}")
        check(reply.registered.heartbeat_interval.seconds == 1,
              f"heartbeat_interval should be the --heartbeat_interval (1s):\n{reply}")
        check(reply.registered.lease.seconds == 30, f"lease should be 30s:\n{reply}")

        reply = next(inbound)
        check(reply.WhichOneof("msg") == "assign",
              f"the job should be assigned to the only agent, got:\n{reply}")
        task = reply.assign.task
        check(task.job_id == job.id and task.attempt == 1 and task.rank == 0
              and task.world_size == 1, f"unexpected assignment:\n{task}")
        check(task.device_kind == "cpu" and task.device_index == 0,
              f"the rank should run on CPU slot 0:\n{task}")
        check(task.master_addr == "127.0.0.1" and task.master_port > 0,
              f"MASTER_ADDR/PORT should be this agent's address and a port:\n{task}")
        check(task.spec == spec, "the assignment should carry the submitted spec")
        check(task.task_token.startswith(f"task:{job.id}:1:0:"),
              f"the assignment should carry the trainer's own credential:\n{task}")
        as_task = metadata(task.task_token)  # what the agent hands its trainer
        log(f"agent registered and got rank 0 of {job.id} (master port {task.master_port})")

        scheduled = client.GetJob(get, metadata=as_client, timeout=RPC_TIMEOUT)
        check(scheduled.state == JobState.JOB_STATE_SCHEDULED,
              f"an assigned job should be SCHEDULED, is {JobState.Name(scheduled.state)}")
        check(len(scheduled.placement.ranks) == 1
              and scheduled.placement.ranks[0].worker_id == "py-agent",
              f"placement should name py-agent:\n{scheduled.placement}")

        def task_status(state, exit_code=0):
            return worker_control_pb2.AgentMessage(task_status=worker_control_pb2.TaskStatus(
                job_id=task.job_id, attempt=task.attempt, rank=task.rank, state=state,
                exit_code=exit_code))

        outbound.put(task_status(worker_control_pb2.TaskStatus.RUNNING))
        outbound.put(worker_control_pb2.AgentMessage(heartbeat=worker_control_pb2.Heartbeat()))
        deadline = time.monotonic() + RPC_TIMEOUT
        while True:
            now_job = client.GetJob(get, metadata=as_client, timeout=RPC_TIMEOUT)
            if now_job.state == JobState.JOB_STATE_RUNNING:
                break
            check(time.monotonic() < deadline,
                  f"the job did not reach RUNNING after the rank reported RUNNING "
                  f"(is {JobState.Name(now_job.state)})")
            time.sleep(0.05)
        listed_workers = client.ListWorkers(coordinator_pb2.ListWorkersRequest(),
                                            metadata=as_client, timeout=RPC_TIMEOUT)
        check(len(listed_workers.workers) == 1
              and listed_workers.workers[0].id == "py-agent"
              and listed_workers.workers[0].state == worker_pb2.WORKER_STATE_READY
              and listed_workers.workers[0].free_cpu_slots == 0,
              f"ListWorkers should show py-agent READY with its slot taken:\n{listed_workers}")
        log("job RUNNING; ListWorkers shows the slot taken")

        for step in STEPS:
            request = worker_control_pb2.ReportProgressRequest(
                job_id=job.id, attempt=task.attempt, rank=0,
                progress=job_pb2.Progress(step=step, epoch=0, total_steps=TOTAL_STEPS,
                                          total_epochs=1, curriculum_factor=1.0 - step / 10.0,
                                          loss_mae=1.0 / step, lr=1e-4, images_per_sec=100.0,
                                          images_seen=16 * step))
            if step == STEPS[-1]:
                request.result.metrics["knn_top1"] = 0.625
                request.result.output_dir = "runs/py-client-job"
            workers.ReportProgress(request, metadata=as_task, timeout=RPC_TIMEOUT)
        expect_code(lambda: workers.ReportProgress(
                        worker_control_pb2.ReportProgressRequest(job_id=job.id, attempt=1, rank=1),
                        metadata=as_task, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.PERMISSION_DENIED, "ReportProgress for another rank with a "
                    "task credential")
        expect_code(lambda: workers.ReportProgress(
                        worker_control_pb2.ReportProgressRequest(job_id=job.id, attempt=2, rank=0),
                        metadata=as_worker, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.FAILED_PRECONDITION, "ReportProgress for a later attempt")
        expect_code(lambda: workers.ReportProgress(
                        worker_control_pb2.ReportProgressRequest(job_id="no-such-job", attempt=1),
                        metadata=as_worker, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.NOT_FOUND, "ReportProgress for an unknown job")
        progressed = client.GetJob(get, metadata=as_client, timeout=RPC_TIMEOUT)
        check(progressed.progress.step == STEPS[-1]
              and progressed.progress.total_steps == TOTAL_STEPS,
              f"GetJob should carry the last progress:\n{progressed.progress}")
        log(f"reported progress for steps {list(STEPS)} with a result")

        outbound.put(task_status(worker_control_pb2.TaskStatus.EXITED, exit_code=0))

        check(watch_done.wait(30.0), "the WatchJob stream did not end after the job finished; "
              f"it saw {len(updates)} updates")
        watcher.join(5.0)
        check(not watch_error,
              f"WatchJob ended with an error: {watch_error and watch_error[0]}")
        expect_code(lambda: workers.ReportProgress(
                        worker_control_pb2.ReportProgressRequest(job_id=job.id, attempt=1, rank=0),
                        metadata=as_task, timeout=RPC_TIMEOUT),
                    grpc.StatusCode.FAILED_PRECONDITION, "ReportProgress with the task "
                    "credential after its task ended")

        # --- What the watch saw ---------------------------------------------
        kinds = [u.WhichOneof("update") for u in updates]
        check(updates and kinds[0] == "snapshot",
              f"the first update should be a snapshot, got {kinds[:1]}")
        check(all(u.job_id == job.id for u in updates), "an update named another job")
        check(updates[0].snapshot.id == job.id, "the snapshot is of another job")
        check(updates[0].snapshot.state == JobState.JOB_STATE_PENDING,
              f"the snapshot (taken before any agent attached) should be PENDING, is "
              f"{JobState.Name(updates[0].snapshot.state)}")
        events = [u.event for u in updates if u.WhichOneof("update") == "event"]
        states = [e.to_state for e in events]
        check(JobState.JOB_STATE_RUNNING in states,
              f"the watch saw no RUNNING event: {[JobState.Name(s) for s in states]}")
        check(states and states[-1] == JobState.JOB_STATE_SUCCEEDED,
              f"the watch should end with SUCCEEDED: {[JobState.Name(s) for s in states]}")
        check(kinds[-1] == "event",
              f"the stream should end right after the terminal event, ends with {kinds[-1]}")
        for earlier, later in zip(events, events[1:]):
            check(later.seq > earlier.seq, "event seq numbers should increase")
            check(later.from_state == earlier.to_state,
                  f"events should chain: {JobState.Name(earlier.to_state)} then from "
                  f"{JobState.Name(later.from_state)}")
        watched_steps = [u.progress.step for u in updates if u.WhichOneof("update") == "progress"]
        check(watched_steps == list(STEPS),
              f"the watch should see every progress report {list(STEPS)}, saw {watched_steps}")
        last_progress = [u.progress for u in updates if u.WhichOneof("update") == "progress"][-1]
        check(last_progress.total_steps == TOTAL_STEPS and last_progress.images_seen == 16 * 20
              and abs(last_progress.curriculum_factor - (-1.0)) < 1e-9,
              f"progress fields not carried through:\n{last_progress}")
        check(last_progress.HasField("update_time"),
              "the coordinator should stamp progress with its update_time")
        log(f"watch saw {len(updates)} updates: events "
            f"{[JobState.Name(s) for s in states]}, progress steps {watched_steps}")

        done = client.GetJob(get, metadata=as_client, timeout=RPC_TIMEOUT)
        check(done.state == JobState.JOB_STATE_SUCCEEDED,
              f"GetJob should say SUCCEEDED, says {JobState.Name(done.state)}")
        check(done.result.metrics.get("knn_top1") == 0.625
              and done.result.output_dir == "runs/py-client-job",
              f"the reported result should be kept:\n{done.result}")
        check(done.HasField("end_time") and done.HasField("start_time"),
              "a finished job should have start_time and end_time")
        succeeded = client.ListJobs(
            coordinator_pb2.ListJobsRequest(states=[JobState.JOB_STATE_SUCCEEDED]),
            metadata=as_client, timeout=RPC_TIMEOUT)
        check([j.id for j in succeeded.jobs] == [job.id],
              "ListJobs(SUCCEEDED) should list the job")
        cancelled = client.CancelJob(coordinator_pb2.CancelJobRequest(job_id=job.id,
                                                                      reason="too late"),
                                     metadata=as_client, timeout=RPC_TIMEOUT)
        check(cancelled.state == JobState.JOB_STATE_SUCCEEDED,
              "CancelJob of a finished job should return it unchanged")
        log("GetJob: SUCCEEDED with the result; CancelJob leaves it SUCCEEDED")

        # The agent hangs up; then the coordinator is stopped.
        outbound.put(None)
        try:
            for extra in inbound:
                raise TestFailure(f"unexpected message to the agent after the job ended:\n{extra}")
        except grpc.RpcError as error:
            raise TestFailure(f"the Attach stream ended with an error: {error.code().name}: "
                              f"{error.details()}")
        channel.close()

        code = coordinator.stop()
        check(code == 0, f"clmae-coordinator exited with {code} after SIGTERM, not 0:\n"
                         f"{coordinator.output()}")
        log("SIGTERM: clmae-coordinator exited 0")
    except BaseException:
        sys.stderr.write(f"--- clmae-coordinator output ---\n{coordinator.output()}"
                         "--- end ---\n")
        raise
    finally:
        coordinator.kill()


def run_main(name, run_test, argv):
    """The command line shared by the process tests: CLMAE_COORDINATOR PROTO_DIR,
    a temporary folder, PASSED or FAILED with the reason; the exit code."""
    if len(argv) != 3:
        print(f"usage: {argv[0]} CLMAE_COORDINATOR PROTO_DIR", file=sys.stderr)
        return 2
    binary, proto_dir = argv[1], argv[2]
    if not os.access(binary, os.X_OK):
        print(f"{name}: FAILED: {binary} is not an executable", file=sys.stderr)
        return 1
    work_dir = tempfile.mkdtemp(prefix=f"clmae-{name}-")
    try:
        run_test(binary, os.path.abspath(proto_dir), work_dir)
    except TestFailure as failure:
        print(f"{name}: FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"{name}: PASSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("python_client_test", run, sys.argv))
