// The clmae-worker executable as a process: flags, shutdown on SIGTERM, and
// what happens to trainers when the agent itself is killed.

#include <signal.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"
#include "tests/worker/agent/fake_worker_control.h"
#include "worker/process/subprocess.h"

namespace clmae {
namespace {

using agent_testing::AgentTempDir;
using agent_testing::FakeServer;
using agent_testing::FakeWorkerControl;
using agent_testing::ProcessAlive;
using agent_testing::ReadFileOrEmpty;
using agent_testing::WaitUntil;
using agent_testing::WriteScript;
using ::testing::HasSubstr;

class ClmaeWorkerBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
    // A trainer that records its pid and runs until stopped.
    WriteScript(dir_.File("trainer.sh"),
                absl::StrCat("echo $$ > ", dir_.File("pid.tmp"), " && mv ", dir_.File("pid.tmp"),
                             " ", dir_.File("pid"), "\nwhile true; do sleep 0.05; done\n"));
  }

  // `token` is "--token tok" unless given (e.g. {"--token_file", path}).
  std::unique_ptr<Subprocess> StartWorker(std::vector<std::string> token = {"--token", "tok"}) {
    SpawnOptions spawn;
    spawn.argv = {CLMAE_WORKER_BINARY,
                  "--coordinator",
                  server_->address(),
                  token[0],
                  token[1],
                  "--gpus",
                  "none",
                  "--cpu-slots",  // dashes and underscores alike
                  "3",
                  "--worker_id",
                  "bin-node",
                  "--advertise_address",
                  "10.0.0.7",
                  "--trainer",
                  dir_.File("trainer.sh"),
                  "--work_dir",
                  dir_.File("work"),
                  "--cancel_grace",
                  "5s"};
    spawn.output = LogFileOutput{dir_.File("worker.log")};
    absl::StatusOr<std::unique_ptr<Subprocess>> worker = Subprocess::Spawn(spawn);
    EXPECT_TRUE(worker.ok()) << worker.status();
    return worker.ok() ? *std::move(worker) : nullptr;
  }

  // Waits for `register`, assigns rank 0 and waits for RUNNING; returns the
  // trainer's pid.
  pid_t AssignOne() {
    if (!WaitUntil([&] { return !service_.messages().empty(); })) return -1;
    v1::CoordinatorMessage assign;
    v1::TaskAssignment* task = assign.mutable_assign()->mutable_task();
    task->set_job_id("bin-job");
    task->set_attempt(1);
    task->set_rank(0);
    task->set_world_size(1);
    task->set_device_kind("cpu");
    task->set_device_index(0);
    task->set_master_addr("10.0.0.7");
    task->set_master_port(agent_testing::UnusedTcpPort());  // rank 0 starts where it is free
    task->mutable_spec()->set_name("bin");
    if (!service_.Send(assign)) return -1;
    if (!WaitUntil([&] { return !ReadFileOrEmpty(dir_.File("pid")).empty(); })) return -1;
    int pid = -1;
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(dir_.File("pid"))), &pid)
               ? pid
               : -1;
  }

  std::optional<v1::TaskStatus> Exited() {
    std::optional<v1::TaskStatus> found;
    WaitUntil([&] {
      for (const v1::AgentMessage& m : service_.messages()) {
        if (m.has_task_status() && m.task_status().state() == v1::TaskStatus::EXITED) {
          found = m.task_status();
        }
      }
      return found.has_value();
    });
    return found;
  }

  AgentTempDir dir_;
  FakeWorkerControl service_;
  std::unique_ptr<FakeServer> server_;
};

// The same command line rules as clmae-coordinator and clmae-train: an
// unknown flag is a usage error (exit 2) that names it.
TEST_F(ClmaeWorkerBinaryTest, AnUnknownFlagIsAUsageError) {
  SpawnOptions spawn;
  spawn.argv = {CLMAE_WORKER_BINARY, "--coordinator", server_->address(), "--no-such-flag", "1"};
  spawn.output = LogFileOutput{dir_.File("usage.log")};
  absl::StatusOr<std::unique_ptr<Subprocess>> worker = Subprocess::Spawn(spawn);
  ASSERT_TRUE(worker.ok()) << worker.status();
  std::optional<ExitStatus> exit = (*worker)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 2);
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("usage.log")), HasSubstr("unknown flag --no_such_flag"));
  EXPECT_TRUE(service_.messages().empty()) << "registered despite the bad command line";
}

TEST_F(ClmaeWorkerBinaryTest, FlagsBecomeTheRegistration) {
  std::unique_ptr<Subprocess> worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  ASSERT_TRUE(WaitUntil([&] { return !service_.messages().empty(); }));
  const v1::Register hello = service_.messages().front().register_();
  EXPECT_EQ(hello.worker_id(), "bin-node");
  EXPECT_EQ(hello.address(), "10.0.0.7");
  EXPECT_EQ(hello.cpu_slots(), 3);
  EXPECT_EQ(hello.devices_size(), 0);
  EXPECT_THAT(service_.tokens(), ::testing::Contains("Bearer tok"));
}

// A node's own token from a file (a Secret mounted per node): its first
// line, without surrounding white space.
TEST_F(ClmaeWorkerBinaryTest, TheTokenCanComeFromAFile) {
  std::ofstream(dir_.File("node-token")) << "  file-tok \nsecond line\n";
  std::unique_ptr<Subprocess> worker = StartWorker({"--token_file", dir_.File("node-token")});
  ASSERT_NE(worker, nullptr);
  ASSERT_TRUE(WaitUntil([&] { return !service_.messages().empty(); }));
  EXPECT_THAT(service_.tokens(), ::testing::Contains("Bearer file-tok"));
}

TEST_F(ClmaeWorkerBinaryTest, AMissingOrEmptyTokenFileIsAUsageError) {
  std::ofstream(dir_.File("empty-token")) << "\n";
  for (const std::string& file : {dir_.File("no-such-token"), dir_.File("empty-token")}) {
    SCOPED_TRACE(file);
    SpawnOptions spawn;
    spawn.argv = {CLMAE_WORKER_BINARY, "--coordinator", server_->address(), "--token_file", file};
    spawn.output = LogFileOutput{dir_.File("token-file.log")};
    absl::StatusOr<std::unique_ptr<Subprocess>> worker = Subprocess::Spawn(spawn);
    ASSERT_TRUE(worker.ok()) << worker.status();
    const std::optional<ExitStatus> status = (*worker)->Wait(absl::Seconds(30));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(*status, ExitStatus::Exited(2));
    EXPECT_THAT(ReadFileOrEmpty(dir_.File("token-file.log")), HasSubstr("--token_file " + file));
  }
  EXPECT_TRUE(service_.messages().empty());
}

TEST_F(ClmaeWorkerBinaryTest, SigtermStopsTrainersReportsAndExitsZero) {
  std::unique_ptr<Subprocess> worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  const pid_t trainer = AssignOne();
  ASSERT_GT(trainer, 0);
  ASSERT_TRUE(worker->Signal(SIGTERM).ok());
  const std::optional<ExitStatus> status = worker->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->success()) << status->ToString() << "\n"
                                 << ReadFileOrEmpty(dir_.File("worker.log"));
  EXPECT_FALSE(ProcessAlive(trainer));
  const std::optional<v1::TaskStatus> exited = Exited();
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->signal(), SIGTERM);
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("worker.log")), HasSubstr("stopped"));
}

TEST_F(ClmaeWorkerBinaryTest, KilledAgentTakesItsTrainersWithIt) {
  std::unique_ptr<Subprocess> worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  const pid_t trainer = AssignOne();
  ASSERT_GT(trainer, 0);
  ASSERT_TRUE(worker->Signal(SIGKILL).ok());
  ASSERT_TRUE(worker->Wait(absl::Seconds(30)).has_value());
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(trainer); }));
}

TEST_F(ClmaeWorkerBinaryTest, BadFlagsExitTwo) {
  SpawnOptions spawn;
  spawn.argv = {CLMAE_WORKER_BINARY, "--gpus", "some", "--trainer", "/bin/true"};
  spawn.output = LogFileOutput{dir_.File("bad.log")};
  absl::StatusOr<std::unique_ptr<Subprocess>> worker = Subprocess::Spawn(spawn);
  ASSERT_TRUE(worker.ok()) << worker.status();
  const std::optional<ExitStatus> status = (*worker)->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, ExitStatus::Exited(2));
  EXPECT_THAT(ReadFileOrEmpty(dir_.File("bad.log")), HasSubstr("--gpus"));
}

}  // namespace
}  // namespace clmae
