#include "worker/agent/trainer_command.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <variant>

#include "common/job_spec/job_spec_yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"

namespace clmae {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

v1::TaskAssignment Assignment() {
  v1::TaskAssignment task;
  task.set_job_id("job-7");
  task.set_attempt(2);
  task.set_rank(1);
  task.set_world_size(4);
  task.set_device_index(3);
  task.set_device_kind("cuda");
  task.set_master_addr("node-a");
  task.set_master_port(29501);
  task.mutable_spec()->set_name("tiny");
  return task;
}

TrainerCommandOptions Options() {
  TrainerCommandOptions options;
  options.trainer_path = "/opt/clmae/bin/clmae-train";
  options.work_dir = "/work";
  options.coordinator.address = "coord:50051";
  options.coordinator.token = "secret";
  return options;
}

TEST(TrainerCommandTest, ArgvNamesSpecDeviceAndJobAndStartsFreshWithoutACheckpoint) {
  const SpawnOptions spawn = TrainerCommand(Options(), Assignment());
  EXPECT_THAT(spawn.argv,
              ElementsAre("/opt/clmae/bin/clmae-train", "--config",
                          "/work/job-7/attempt-2/job.yaml", "--device", "cuda:3", "--coordinator",
                          "coord:50051", "--job_id", "job-7", "--attempt", "2"));
  ASSERT_TRUE(std::holds_alternative<LogFileOutput>(spawn.output));
  EXPECT_EQ(std::get<LogFileOutput>(spawn.output).path, "/work/job-7/attempt-2/rank-1.log");
  EXPECT_TRUE(spawn.kill_on_parent_death);
  EXPECT_TRUE(spawn.new_process_group);
}

TEST(TrainerCommandTest, CpuDeviceAndTheCachedCheckpointToResumeFrom) {
  v1::TaskAssignment task = Assignment();
  task.set_device_kind("cpu");
  task.set_resume_checkpoint("ck-42");
  const SpawnOptions spawn = TrainerCommand(Options(), task, "/work/checkpoint-cache/ab12");
  EXPECT_THAT(
      spawn.argv,
      ElementsAre("/opt/clmae/bin/clmae-train", "--config", "/work/job-7/attempt-2/job.yaml",
                  "--resume", "/work/checkpoint-cache/ab12", "--device", "cpu", "--coordinator",
                  "coord:50051", "--job_id", "job-7", "--attempt", "2"));
  EXPECT_THAT(spawn.argv, Not(Contains("ck-42"))) << "the trainer gets a file, not an id";
}

TEST(TrainerCommandTest, EnvironmentCarriesRankWorldMasterAndCredentials) {
  TrainerCommandOptions options = Options();
  options.coordinator.tls_ca_file = "/tls/ca.pem";
  const SpawnOptions spawn = TrainerCommand(options, Assignment());
  EXPECT_THAT(spawn.env, Contains(Pair("RANK", "1")));
  EXPECT_THAT(spawn.env, Contains(Pair("WORLD_SIZE", "4")));
  EXPECT_THAT(spawn.env, Contains(Pair("LOCAL_RANK", "3")));
  EXPECT_THAT(spawn.env, Contains(Pair("MASTER_ADDR", "node-a")));
  EXPECT_THAT(spawn.env, Contains(Pair("MASTER_PORT", "29501")));
  EXPECT_THAT(spawn.env, Contains(Pair("CLMAE_TOKEN", "secret")));
  EXPECT_THAT(spawn.env, Contains(Pair("CLMAE_TLS_CA", "/tls/ca.pem")));
  for (const auto& [name, value] : spawn.env) {
    EXPECT_NE(name, "CLMAE_TLS_CERT") << "unset TLS settings are not passed on";
    EXPECT_NE(name, "CLMAE_CHECKPOINT_CACHE") << "no cache configured";
  }
}

TEST(TrainerCommandTest, TheTrainerGetsItsTaskCredentialNotTheNodes) {
  v1::TaskAssignment task = Assignment();
  task.set_task_token("task:job-7:2:1:abc");
  const SpawnOptions spawn = TrainerCommand(Options(), task);
  EXPECT_THAT(spawn.env, Contains(Pair("CLMAE_TOKEN", "task:job-7:2:1:abc")));
  for (const auto& [name, value] : spawn.env) {
    EXPECT_NE(value, "secret") << name << " carries the node's token";
  }
}

TEST(TrainerCommandTest, EnvironmentNamesTheNodesCheckpointCache) {
  TrainerCommandOptions options = Options();
  options.checkpoint_cache_dir = "/work/checkpoint-cache";
  const SpawnOptions spawn = TrainerCommand(options, Assignment());
  EXPECT_THAT(spawn.env, Contains(Pair("CLMAE_CHECKPOINT_CACHE", "/work/checkpoint-cache")));
}

TEST(TrainerCommandTest, ValidateAssignmentRejectsUnsafeOrInconsistentFields) {
  EXPECT_TRUE(ValidateAssignment(Assignment()).ok());
  const std::pair<std::string, std::function<void(v1::TaskAssignment&)>> cases[] = {
      {"job_id", [](v1::TaskAssignment& t) { t.set_job_id("../etc"); }},
      {"job_id", [](v1::TaskAssignment& t) { t.set_job_id(".."); }},
      {"job_id", [](v1::TaskAssignment& t) { t.set_job_id(""); }},
      {"attempt", [](v1::TaskAssignment& t) { t.set_attempt(0); }},
      {"rank", [](v1::TaskAssignment& t) { t.set_rank(4); }},
      {"device_kind", [](v1::TaskAssignment& t) { t.set_device_kind("tpu"); }},
      {"device_index", [](v1::TaskAssignment& t) { t.set_device_index(-1); }},
      {"master_addr", [](v1::TaskAssignment& t) { t.clear_master_addr(); }},
      {"master_port", [](v1::TaskAssignment& t) { t.set_master_port(70000); }},
  };
  for (const auto& [field, mutate] : cases) {
    v1::TaskAssignment task = Assignment();
    mutate(task);
    const absl::Status status = ValidateAssignment(task);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(status.message(), HasSubstr(field));
  }
}

TEST(TrainerCommandTest, PrepareTaskFilesWritesTheSpecAsYamlTheTrainerReads) {
  agent_testing::AgentTempDir dir;
  TrainerCommandOptions options = Options();
  options.work_dir = dir.path();
  v1::TaskAssignment task = Assignment();
  task.mutable_spec()->set_name("written-spec");
  const TaskPaths paths = PathsFor(options, task);
  absl::StatusOr<v1::JobSpec> spec = ConfineJobPaths(options, task);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(PrepareTaskFiles(paths, *spec).ok());
  absl::StatusOr<v1::JobSpec> read = LoadJobSpecFile(paths.spec_path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->name(), "written-spec");
  EXPECT_EQ(read->output().dir(), JobFolder(options, task) + "/output");
}

TEST(TrainerCommandTest, OutputsLandInsideTheJobFolder) {
  agent_testing::AgentTempDir dir;
  TrainerCommandOptions options = Options();
  options.work_dir = dir.path();
  v1::TaskAssignment task = Assignment();
  EXPECT_EQ(JobFolder(options, task), dir.path() + "/" + task.job_id());
  task.mutable_spec()->mutable_output()->set_dir("runs/./a");
  absl::StatusOr<v1::JobSpec> spec = ConfineJobPaths(options, task);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->output().dir(), JobFolder(options, task) + "/runs/a");
  for (const char* escaping : {"../../../../etc", "/etc", "a/../../b", ".."}) {
    task.mutable_spec()->mutable_output()->set_dir(escaping);
    spec = ConfineJobPaths(options, task);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kPermissionDenied) << escaping;
    EXPECT_THAT(spec.status().message(), HasSubstr("output.dir")) << escaping;
  }
}

TEST(TrainerCommandTest, PathsAJobReadsMustLieUnderTheDataRoots) {
  agent_testing::AgentTempDir dir;
  const std::string root = dir.path() + "/datasets";
  const std::string outside = dir.path() + "/private";
  std::filesystem::create_directories(root + "/mnist");
  std::filesystem::create_directories(outside);
  std::filesystem::create_directory_symlink(outside, root + "/escape");
  TrainerCommandOptions options = Options();
  options.work_dir = dir.path() + "/work";
  options.data_roots = {root};
  v1::TaskAssignment task = Assignment();

  task.mutable_spec()->mutable_data()->set_path(root + "/mnist");
  task.mutable_spec()->mutable_eval()->set_path(root + "/not-there-yet/test");
  EXPECT_TRUE(ConfineJobPaths(options, task).ok());

  struct Case {
    const char* field;
    std::string path;
  };
  const Case cases[] = {
      {"data.path", outside},
      {"data.path", root + "/../private"},
      {"data.path", root + "/escape/secrets"},  // a link out of the root
      {"data.path", root + "-sibling"},         // a name that only starts like the root
      {"eval.path", "/etc"},
      {"train.init_from", "/etc/passwd"},
  };
  for (const Case& c : cases) {
    v1::TaskAssignment bad = task;
    if (std::string(c.field) == "data.path") bad.mutable_spec()->mutable_data()->set_path(c.path);
    if (std::string(c.field) == "eval.path") bad.mutable_spec()->mutable_eval()->set_path(c.path);
    if (std::string(c.field) == "train.init_from") {
      bad.mutable_spec()->mutable_train()->set_init_from(c.path);
    }
    const absl::StatusOr<v1::JobSpec> spec = ConfineJobPaths(options, bad);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kPermissionDenied) << c.path;
    EXPECT_THAT(spec.status().message(), HasSubstr(c.field)) << c.path;
    EXPECT_THAT(spec.status().message(), HasSubstr("--data_roots")) << c.path;
  }
}

TEST(TrainerCommandTest, LogTailKeepsTheLastLines) {
  agent_testing::AgentTempDir dir;
  const std::string path = dir.File("log");
  {
    std::ofstream out(path);
    for (int i = 1; i <= 30; ++i) out << "line " << i << "\n";
  }
  const std::string tail = LogTail(path, 3);
  EXPECT_EQ(tail, "line 28\nline 29\nline 30");
  EXPECT_EQ(LogTail(dir.File("missing")), "");
  // A byte limit that cuts a line drops the partial line.
  EXPECT_EQ(LogTail(path, 20, 10), "line 30");
}

// Rank 0's rendezvous store binds its port with SO_REUSEADDR on every
// address; the agent checks the same way before starting it.
TEST(TrainerCommandTest, TcpPortBindableIsFalseWhileAnotherProcessListensThere) {
  int port = 0;
  {
    agent_testing::ListeningSocket other_server;
    port = other_server.port();
    ASSERT_GT(port, 0);
    absl::StatusOr<bool> bindable = TcpPortBindable(port);
    ASSERT_TRUE(bindable.ok()) << bindable.status();
    EXPECT_FALSE(*bindable);
  }
  absl::StatusOr<bool> bindable = TcpPortBindable(port);
  ASSERT_TRUE(bindable.ok()) << bindable.status();
  EXPECT_TRUE(*bindable) << "free again once the listener closed";
  EXPECT_TRUE(*TcpPortBindable(port)) << "the check itself leaves the port free";
  EXPECT_EQ(TcpPortBindable(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TcpPortBindable(65536).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clmae
