#include "worker/agent/worker_agent.h"

#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/exit_codes.h"
#include "common/job_spec/job_spec_yaml.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"
#include "tests/worker/agent/fake_worker_control.h"

namespace clmae {
namespace {

using agent_testing::AgentTempDir;
using agent_testing::FakeServer;
using agent_testing::FakeWorkerControl;
using agent_testing::ProcessAlive;
using agent_testing::ReadFileOrEmpty;
using agent_testing::WaitUntil;
using agent_testing::WriteScript;
using ::testing::Contains;
using ::testing::HasSubstr;

// Records its arguments, environment and pid (plus the pid of a background
// child it leaves in its process group), writes a log line, then does
// `behaviour`.
std::string TrainerScript(const std::string& out_dir, const std::string& behaviour) {
  return absl::StrCat("d=", out_dir, "\n",
                      "echo \"$@\" > $d/args-$RANK.tmp && mv $d/args-$RANK.tmp $d/args-$RANK\n",
                      "env > $d/env-$RANK.tmp && mv $d/env-$RANK.tmp $d/env-$RANK\n",
                      "sleep 1000 & echo $! > $d/child-$RANK.tmp && mv $d/child-$RANK.tmp "
                      "$d/child-$RANK\n",
                      "echo $$ > $d/pid-$RANK.tmp && mv $d/pid-$RANK.tmp $d/pid-$RANK\n",
                      "echo \"trainer rank $RANK says hello\"\n", behaviour, "\n");
}

class WorkerAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
    trainer_ = dir_.File("trainer.sh");
    // Rank 0 starts only where its rendezvous port is free.
    master_port_ = agent_testing::UnusedTcpPort();
    ASSERT_GT(master_port_, 0);
  }

  void TearDown() override {
    service_.HoldFetches(false);
    if (agent_ != nullptr) agent_->Shutdown();
  }

  void UseTrainer(const std::string& behaviour) {
    WriteScript(trainer_, TrainerScript(dir_.path(), behaviour));
  }

  WorkerAgentOptions Options() {
    WorkerAgentOptions options;
    options.worker_id = "node-1";
    options.advertise_address = "node-1.example";
    options.coordinator.address = server_->address();
    options.coordinator.token = "worker-token";
    options.discover_gpus = false;
    options.cpu_slots = 2;
    options.trainer_path = trainer_;
    options.work_dir = dir_.File("work");
    options.cancel_grace = absl::Seconds(10);
    options.reconnect_backoff_min = absl::Milliseconds(20);
    options.reconnect_backoff_max = absl::Milliseconds(200);
    return options;
  }

  void StartAgent() { StartAgent(Options()); }
  void StartAgent(WorkerAgentOptions options) {
    absl::StatusOr<std::unique_ptr<WorkerAgent>> agent = WorkerAgent::Create(std::move(options));
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    ASSERT_TRUE(WaitUntil([&] { return service_.attached(); }));
  }

  v1::CoordinatorMessage Assign(int rank, int world_size = 2, std::string job = "job-1") {
    v1::CoordinatorMessage message;
    v1::TaskAssignment* task = message.mutable_assign()->mutable_task();
    task->set_job_id(job);
    task->set_attempt(3);
    task->set_rank(rank);
    task->set_world_size(world_size);
    task->set_device_kind("cpu");
    task->set_device_index(rank);
    task->set_master_addr("node-0.example");
    task->set_master_port(master_port_);
    task->mutable_spec()->set_name("tiny-job");
    return message;
  }

  static v1::CoordinatorMessage Cancel(int rank, absl::Duration grace) {
    v1::CoordinatorMessage message;
    v1::Cancel* cancel = message.mutable_cancel();
    cancel->set_job_id("job-1");
    cancel->set_attempt(3);
    cancel->set_rank(rank);
    cancel->mutable_grace()->set_seconds(absl::ToInt64Seconds(grace));
    cancel->mutable_grace()->set_nanos(
        static_cast<int>(absl::ToInt64Nanoseconds(grace % absl::Seconds(1))));
    cancel->set_reason("test");
    return message;
  }

  // The statuses received for `rank` of job-1, in order.
  std::vector<v1::TaskStatus> Statuses(FakeWorkerControl& service, int rank) {
    std::vector<v1::TaskStatus> out;
    for (const v1::AgentMessage& m : service.messages()) {
      if (m.has_task_status() && m.task_status().rank() == rank) out.push_back(m.task_status());
    }
    return out;
  }
  std::optional<v1::TaskStatus> WaitForState(FakeWorkerControl& service, int rank,
                                             v1::TaskStatus::State state) {
    std::optional<v1::TaskStatus> found;
    WaitUntil([&] {
      for (const v1::TaskStatus& s : Statuses(service, rank)) {
        if (s.state() == state) found = s;
      }
      return found.has_value();
    });
    return found;
  }

  pid_t ReadPid(const std::string& name) {
    if (!WaitUntil([&] { return !ReadFileOrEmpty(dir_.File(name)).empty(); })) return -1;
    int pid = -1;
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(dir_.File(name))), &pid)
               ? pid
               : -1;
  }

  AgentTempDir dir_;
  FakeWorkerControl service_;
  std::unique_ptr<FakeServer> server_;
  std::string trainer_;
  int master_port_ = 0;
  std::unique_ptr<WorkerAgent> agent_;
};

TEST_F(WorkerAgentTest, RegistersCapacityWithTokenAndSendsHeartbeats) {
  UseTrainer("exit 0");
  StartAgent();
  ASSERT_TRUE(WaitUntil([&] { return !service_.messages().empty(); }));
  const v1::AgentMessage first = service_.messages().front();
  ASSERT_TRUE(first.has_register_());
  EXPECT_EQ(first.register_().worker_id(), "node-1");
  EXPECT_EQ(first.register_().address(), "node-1.example");
  EXPECT_EQ(first.register_().cpu_slots(), 2);
  EXPECT_EQ(first.register_().devices_size(), 0);
  EXPECT_EQ(first.register_().running_tasks_size(), 0);
  EXPECT_THAT(service_.tokens(), ::testing::Contains("Bearer worker-token"));
  EXPECT_TRUE(WaitUntil([&] { return service_.heartbeats() >= 3; }));
}

TEST_F(WorkerAgentTest, AssignmentStartsTheTrainerWithItsArgvEnvAndLog) {
  UseTrainer("echo 'loss went NaN at step 12'\nexit 3");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(1)));

  std::optional<v1::TaskStatus> exited = WaitForState(service_, 1, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  const std::vector<v1::TaskStatus> statuses = Statuses(service_, 1);
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0].state(), v1::TaskStatus::RUNNING);
  EXPECT_EQ(statuses[0].job_id(), "job-1");
  EXPECT_EQ(statuses[0].attempt(), 3);
  EXPECT_EQ(exited->exit_code(), 3);
  EXPECT_EQ(exited->signal(), 0);
  EXPECT_THAT(exited->message(), HasSubstr("loss went NaN at step 12"));

  const std::string attempt_dir = dir_.File("work/job-1/attempt-3");
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-1")),
            absl::StrCat("--config ", attempt_dir, "/job.yaml --device cpu --coordinator ",
                         server_->address(), " --job_id job-1 --attempt 3\n"));
  // One entry per line of `env`, wherever the caller's environment puts it.
  const std::vector<std::string> env =
      absl::StrSplit(ReadFileOrEmpty(dir_.File("env-1")), '\n', absl::SkipEmpty());
  EXPECT_THAT(env, Contains("RANK=1"));
  EXPECT_THAT(env, Contains("WORLD_SIZE=2"));
  EXPECT_THAT(env, Contains("LOCAL_RANK=1"));
  EXPECT_THAT(env, Contains("MASTER_ADDR=node-0.example"));
  EXPECT_THAT(env, Contains(absl::StrCat("MASTER_PORT=", master_port_)));
  EXPECT_THAT(env, Contains("CLMAE_TOKEN=worker-token"));
  EXPECT_THAT(ReadFileOrEmpty(attempt_dir + "/rank-1.log"), HasSubstr("trainer rank 1 says hello"));
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile(attempt_dir + "/job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "tiny-job");
  // What the trainer left in its process group went with it.
  const pid_t child = ReadPid("child-1");
  ASSERT_GT(child, 0);
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(child); }));
}

TEST_F(WorkerAgentTest, SuccessfulExitCarriesNoMessage) {
  UseTrainer("exit 0");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0);
  EXPECT_EQ(exited->signal(), 0);
  EXPECT_EQ(exited->message(), "");
}

TEST_F(WorkerAgentTest, AResumedAttemptStartsFromTheFetchedCheckpointInTheNodeCache) {
  const std::string bytes(3000, 'c');
  v1::Checkpoint record;
  record.set_id("ck-9");
  record.mutable_metadata()->set_job_id("job-1");
  record.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
  record.mutable_metadata()->set_size_bytes(static_cast<int64_t>(bytes.size()));
  record.mutable_metadata()->set_sha256(Sha256Hex(bytes));
  service_.AddCheckpoint(record, bytes);
  UseTrainer("exit 0");
  StartAgent();
  v1::CoordinatorMessage assign = Assign(0, 1);
  v1::TaskAssignment* task = assign.mutable_assign()->mutable_task();
  task->set_resume_checkpoint("ck-9");
  task->set_resume_sha256(Sha256Hex(bytes));
  task->set_resume_size_bytes(static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(service_.Send(assign));

  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0) << exited->message();
  const std::string cache = dir_.File("work/checkpoint-cache");
  const std::string cached = absl::StrCat(cache, "/", Sha256Hex(bytes));
  EXPECT_EQ(ReadFileOrEmpty(cached), bytes);
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("args-0")),
              HasSubstr(absl::StrCat("--resume ", cached, " --device cpu")));
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("env-0")),
              HasSubstr(absl::StrCat("\nCLMAE_CHECKPOINT_CACHE=", cache, "\n")));
  ASSERT_EQ(service_.fetches().size(), 1u);
  EXPECT_EQ(service_.fetches()[0].id(), "ck-9");
}

TEST_F(WorkerAgentTest, ACheckpointThatCannotBeFetchedEndsTheTaskUnstarted) {
  UseTrainer("exit 0");
  StartAgent();
  v1::CoordinatorMessage assign = Assign(0, 1);
  v1::TaskAssignment* task = assign.mutable_assign()->mutable_task();
  task->set_resume_checkpoint("ck-gone");
  task->set_resume_sha256(Sha256Hex("lost"));
  task->set_resume_size_bytes(4);
  ASSERT_TRUE(service_.Send(assign));

  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 127);
  EXPECT_THAT(exited->message(), HasSubstr("cannot fetch checkpoint ck-gone: "));
  EXPECT_THAT(exited->message(), HasSubstr("no checkpoint ck-gone in job job-1"));
  // RUNNING from the start of the fetch (so the coordinator hears from the
  // rank within its lease), then the exit.
  const std::vector<v1::TaskStatus> statuses = Statuses(service_, 0);
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0].state(), v1::TaskStatus::RUNNING);
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "") << "the trainer never ran";
}

// An assignment of rank 0 (rendezvous at `master_port`) resuming from `id`,
// which the fake serves as `bytes`.
v1::CoordinatorMessage ResumeAssignment(FakeWorkerControl& service, const std::string& id,
                                        const std::string& bytes, int master_port) {
  v1::Checkpoint record;
  record.set_id(id);
  record.mutable_metadata()->set_job_id("job-1");
  record.mutable_metadata()->set_size_bytes(static_cast<int64_t>(bytes.size()));
  record.mutable_metadata()->set_sha256(Sha256Hex(bytes));
  service.AddCheckpoint(record, bytes);
  v1::CoordinatorMessage message;
  v1::TaskAssignment* task = message.mutable_assign()->mutable_task();
  task->set_job_id("job-1");
  task->set_attempt(3);
  task->set_rank(0);
  task->set_world_size(1);
  task->set_device_kind("cpu");
  task->set_master_addr("node-0.example");
  task->set_master_port(master_port);
  task->set_resume_checkpoint(id);
  task->set_resume_sha256(Sha256Hex(bytes));
  task->set_resume_size_bytes(static_cast<int64_t>(bytes.size()));
  return message;
}

TEST_F(WorkerAgentTest, ACancelWhileTheCheckpointIsFetchedEndsTheTaskUnstarted) {
  UseTrainer("exit 0");
  StartAgent();
  service_.HoldFetches(true);
  ASSERT_TRUE(
      service_.Send(ResumeAssignment(service_, "ck-10", std::string(2000, 'x'), master_port_)));
  ASSERT_TRUE(WaitUntil([&] { return service_.fetches().size() == 1; }));
  ASSERT_TRUE(service_.Send(Cancel(0, absl::Seconds(5))));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 127);
  EXPECT_THAT(exited->message(), HasSubstr("cancelled (test) while fetching"));
  service_.HoldFetches(false);
  agent_->Shutdown();  // waits for the fetch to end
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "") << "the trainer never ran";
  EXPECT_EQ(Statuses(service_, 0).size(), 2u);  // RUNNING while fetching, then EXITED
}

TEST_F(WorkerAgentTest, ShutdownCancelsAFetchAndReportsTheTaskUnstarted) {
  UseTrainer("exit 0");
  StartAgent();
  service_.HoldFetches(true);
  ASSERT_TRUE(
      service_.Send(ResumeAssignment(service_, "ck-11", std::string(2000, 'y'), master_port_)));
  ASSERT_TRUE(WaitUntil([&] { return service_.fetches().size() == 1; }));
  agent_->Shutdown();  // returns although the coordinator still holds the fetch
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 127);
  EXPECT_THAT(exited->message(), HasSubstr("shutting down"));
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "");
  service_.HoldFetches(false);
}

TEST_F(WorkerAgentTest, ACheckpointThatFailedVerificationOnTheCoordinatorEndsTheTaskWith65) {
  UseTrainer("exit 0");
  StartAgent();
  const v1::CoordinatorMessage assign =
      ResumeAssignment(service_, "ck-12", std::string(3000, 'q'), master_port_);
  service_.FailFetches("ck-12",
                       grpc::Status(grpc::StatusCode::DATA_LOSS,
                                    "checkpoint ck-12 failed verification on the coordinator: "
                                    "its bytes have another SHA-256; it has been quarantined"),
                       2000);
  ASSERT_TRUE(service_.Send(assign));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), kTaskExitCheckpointCorrupt);
  EXPECT_THAT(exited->message(), HasSubstr("checkpoint ck-12 is corrupt on the coordinator"));
  EXPECT_THAT(exited->message(), HasSubstr("it has been quarantined"));
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "") << "the trainer never ran";
  EXPECT_EQ(service_.fetches().size(), 1u);
}

TEST_F(WorkerAgentTest, AQuarantinedCheckpointEndsTheTaskWith65) {
  UseTrainer("exit 0");
  StartAgent();
  const v1::CoordinatorMessage assign =
      ResumeAssignment(service_, "ck-13", std::string(3000, 'r'), master_port_);
  service_.FailFetches("ck-13",
                       grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "checkpoint ck-13 of job \"job-1\" was quarantined at ..."),
                       -1);
  ASSERT_TRUE(service_.Send(assign));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), kTaskExitCheckpointCorrupt);
  EXPECT_THAT(exited->message(), HasSubstr("checkpoint ck-13"));
  EXPECT_THAT(exited->message(), HasSubstr("quarantined"));
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "");
}

TEST_F(WorkerAgentTest, ACheckpointDamagedOnTheWayOnceIsFetchedAgainAndResumedFrom) {
  UseTrainer("exit 0");
  StartAgent();
  const std::string bytes(3000, 's');
  service_.DamageFetches(1);
  ASSERT_TRUE(service_.Send(ResumeAssignment(service_, "ck-14", bytes, master_port_)));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0) << exited->message();
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("args-0")), HasSubstr("--resume "));
  EXPECT_EQ(service_.fetches().size(), 2u);
}

TEST_F(WorkerAgentTest, CrashingTrainerIsReportedAndTheAgentCarriesOn) {
  UseTrainer("if [ \"$RANK\" = 0 ]; then kill -SEGV $$; fi\nexit 0");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  std::optional<v1::TaskStatus> crashed = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->signal(), SIGSEGV);
  EXPECT_EQ(crashed->exit_code(), 0);
  EXPECT_THAT(crashed->message(), HasSubstr("SIGSEGV"));
  // The agent still takes work.
  ASSERT_TRUE(service_.Send(Assign(1)));
  std::optional<v1::TaskStatus> next = WaitForState(service_, 1, v1::TaskStatus::EXITED);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->exit_code(), 0);
}

TEST_F(WorkerAgentTest, CancelStopsTheTrainerWithSigterm) {
  UseTrainer("while true; do sleep 0.05; done");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  const pid_t pid = ReadPid("pid-0");
  const pid_t child = ReadPid("child-0");
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(ProcessAlive(pid));

  ASSERT_TRUE(service_.Send(Cancel(0, absl::Seconds(20))));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->signal(), SIGTERM);
  EXPECT_EQ(exited->exit_code(), 0);
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(child); }));
}

TEST_F(WorkerAgentTest, CancelKillsATrainerThatIgnoresSigtermAfterTheGrace) {
  UseTrainer("trap '' TERM\necho > " + dir_.File("ignoring") + "\nwhile true; do sleep 0.05; done");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  const pid_t pid = ReadPid("pid-0");
  ASSERT_TRUE(WaitUntil([&] { return !ReadFileOrEmpty(dir_.File("ignoring")).empty(); }));
  ASSERT_TRUE(service_.Send(Cancel(0, absl::Milliseconds(200))));
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->signal(), SIGKILL);
  EXPECT_FALSE(ProcessAlive(pid));
}

TEST_F(WorkerAgentTest, CancelOfAnUnknownTaskIsIgnored) {
  UseTrainer("while [ ! -e " + dir_.File("release") + " ]; do sleep 0.05; done\nexit 0");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  ASSERT_TRUE(service_.Send(Cancel(1, absl::Seconds(1))));
  WriteScript(dir_.File("release"), "");
  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0);
  EXPECT_TRUE(Statuses(service_, 1).empty());
}

TEST_F(WorkerAgentTest, UnstartableAssignmentsAreReportedAsExit127) {
  UseTrainer("exit 0");
  WorkerAgentOptions options = Options();
  options.trainer_path = dir_.File("no-such-trainer");
  StartAgent(options);
  ASSERT_TRUE(service_.Send(Assign(0)));
  v1::CoordinatorMessage bad = Assign(1, 2, "../escape");
  ASSERT_TRUE(service_.Send(bad));
  std::optional<v1::TaskStatus> missing = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->exit_code(), 127);
  EXPECT_THAT(missing->message(), HasSubstr("no-such-trainer"));
  std::optional<v1::TaskStatus> invalid = WaitForState(service_, 1, v1::TaskStatus::EXITED);
  ASSERT_TRUE(invalid.has_value());
  EXPECT_EQ(invalid->exit_code(), 127);
  EXPECT_THAT(invalid->message(), HasSubstr("job_id"));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("escape")));
}

// Another process listens on the port rank 0 was given to host the
// rendezvous at: the trainer would fail to bind it and burn a restart. The
// agent does not start it and reports the node's problem (69), which the
// coordinator requeues elsewhere; the other ranks only connect to the port.
TEST_F(WorkerAgentTest, ARendezvousPortInUseEndsRankZeroUnstartedWithExit69) {
  UseTrainer("exit 0");
  StartAgent();
  agent_testing::ListeningSocket other_server;
  ASSERT_GT(other_server.port(), 0);
  v1::CoordinatorMessage rank0 = Assign(0);
  rank0.mutable_assign()->mutable_task()->set_master_port(other_server.port());
  ASSERT_TRUE(service_.Send(rank0));

  std::optional<v1::TaskStatus> exited = WaitForState(service_, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), kTaskExitRendezvousBusy);
  EXPECT_EQ(exited->signal(), 0);
  EXPECT_EQ(exited->message(),
            absl::StrCat("rendezvous port ", other_server.port(), " is in use on worker node-1"));
  EXPECT_EQ(Statuses(service_, 0).size(), 1u) << "never reported RUNNING";
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("args-0")), "") << "the trainer never ran";

  v1::CoordinatorMessage rank1 = Assign(1);
  rank1.mutable_assign()->mutable_task()->set_master_port(other_server.port());
  ASSERT_TRUE(service_.Send(rank1));
  std::optional<v1::TaskStatus> other_rank = WaitForState(service_, 1, v1::TaskStatus::EXITED);
  ASSERT_TRUE(other_rank.has_value());
  EXPECT_EQ(other_rank->exit_code(), 0) << other_rank->message();
  const std::vector<std::string> env =
      absl::StrSplit(ReadFileOrEmpty(dir_.File("env-1")), '\n', absl::SkipEmpty());
  EXPECT_THAT(env, Contains(absl::StrCat("MASTER_PORT=", other_server.port())));
}

TEST_F(WorkerAgentTest, ReconnectsAfterTheCoordinatorRestartsAndListsRunningTasks) {
  UseTrainer("while [ ! -e " + dir_.File("release") + " ]; do sleep 0.05; done\nexit 0");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  const pid_t pid = ReadPid("pid-0");
  const int port = server_->port();

  server_->Stop();
  // The coordinator is away for a while; the trainer keeps running.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(ProcessAlive(pid));

  FakeWorkerControl restarted;
  FakeServer again(&restarted, port);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(WaitUntil([&] { return !restarted.messages().empty(); }));
  const v1::AgentMessage hello = restarted.messages().front();
  ASSERT_TRUE(hello.has_register_());
  ASSERT_EQ(hello.register_().running_tasks_size(), 1);
  const v1::Task& task = hello.register_().running_tasks(0);
  EXPECT_EQ(task.job_id(), "job-1");
  EXPECT_EQ(task.attempt(), 3);
  EXPECT_EQ(task.rank(), 0);
  EXPECT_EQ(task.device_kind(), "cpu");
  EXPECT_EQ(task.device_index(), 0);
  EXPECT_TRUE(ProcessAlive(pid));

  // The rank's end goes to the new stream.
  WriteScript(dir_.File("release"), "");
  std::optional<v1::TaskStatus> exited = WaitForState(restarted, 0, v1::TaskStatus::EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0);
  agent_->Shutdown();
  agent_.reset();
}

TEST_F(WorkerAgentTest, ExitWhileDisconnectedIsSentRightAfterRegister) {
  UseTrainer("while [ ! -e " + dir_.File("release") + " ]; do sleep 0.05; done\nexit 4");
  StartAgent();
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  const pid_t pid = ReadPid("pid-0");
  const int port = server_->port();

  server_->Stop();
  WriteScript(dir_.File("release"), "");
  ASSERT_TRUE(WaitUntil([&] { return !ProcessAlive(pid); }));

  FakeWorkerControl restarted;
  FakeServer again(&restarted, port);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(WaitUntil([&] { return restarted.messages().size() >= 2; }));
  const std::vector<v1::AgentMessage> messages = restarted.messages();
  ASSERT_TRUE(messages[0].has_register_());
  EXPECT_EQ(messages[0].register_().running_tasks_size(), 0);
  ASSERT_TRUE(messages[1].has_task_status());
  EXPECT_EQ(messages[1].task_status().state(), v1::TaskStatus::EXITED);
  EXPECT_EQ(messages[1].task_status().exit_code(), 4);
  agent_->Shutdown();
  agent_.reset();
}

TEST_F(WorkerAgentTest, ShutdownStopsEveryTrainerReportsAndLeavesNoProcess) {
  UseTrainer("while true; do sleep 0.05; done");
  WorkerAgentOptions options = Options();
  options.cancel_grace = absl::Seconds(5);
  StartAgent(options);
  ASSERT_TRUE(service_.Send(Assign(0)));
  ASSERT_TRUE(service_.Send(Assign(1)));
  ASSERT_TRUE(WaitForState(service_, 0, v1::TaskStatus::RUNNING).has_value());
  ASSERT_TRUE(WaitForState(service_, 1, v1::TaskStatus::RUNNING).has_value());
  const pid_t pids[] = {ReadPid("pid-0"), ReadPid("pid-1"), ReadPid("child-0"), ReadPid("child-1")};

  agent_->Shutdown();
  // The trainers were reaped; what they left in their groups was SIGKILLed
  // and goes as soon as the kernel delivers the signal.
  for (pid_t pid : pids) {
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(pid); })) << pid;
  }
  for (int rank : {0, 1}) {
    std::optional<v1::TaskStatus> exited = WaitForState(service_, rank, v1::TaskStatus::EXITED);
    ASSERT_TRUE(exited.has_value()) << rank;
    EXPECT_EQ(exited->signal(), SIGTERM);
  }
  // The agent closed its stream.
  EXPECT_TRUE(WaitUntil([&] { return service_.ended_streams() == service_.streams(); }));
}

TEST_F(WorkerAgentTest, ServerDroppingTheStreamLeadsToANewRegistration) {
  UseTrainer("exit 0");
  StartAgent();
  ASSERT_TRUE(WaitUntil([&] { return service_.streams() == 1; }));
  service_.DropStream();
  auto registers = [&] {
    int n = 0;
    for (const v1::AgentMessage& m : service_.messages()) n += m.has_register_() ? 1 : 0;
    return n;
  };
  EXPECT_TRUE(WaitUntil([&] { return registers() == 2; }));
  EXPECT_EQ(service_.streams(), 2);
}

TEST(WorkerAgentCreateTest, RejectsIncompleteOptions) {
  WorkerAgentOptions options;
  options.advertise_address = "a";
  options.trainer_path = "/bin/true";
  options.work_dir = "/tmp";
  options.discover_gpus = false;
  absl::StatusOr<std::unique_ptr<WorkerAgent>> agent = WorkerAgent::Create(options);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(agent.status().message(), HasSubstr("worker_id"));

  options.worker_id = "w";
  options.data_roots = {"/usr/share/datasets", ""};
  agent = WorkerAgent::Create(options);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(agent.status().message(), HasSubstr("data_roots: an empty entry"));

  options.data_roots = {"/usr/share/datasets"};
  options.cpu_slots = 0;
  agent = WorkerAgent::Create(options);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(agent.status().message(), HasSubstr("cpu_slots"));

  options.cpu_slots = 1;
  options.reconnect_backoff_min = absl::Seconds(5);
  options.reconnect_backoff_max = absl::Seconds(1);
  agent = WorkerAgent::Create(options);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(agent.status().message(), HasSubstr("backoff"));
}

}  // namespace
}  // namespace clmae
