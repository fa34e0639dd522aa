// The clmae-coordinator executable as a process: it starts, writes its port
// file, serves over TCP, and exits 0 on SIGTERM; bad command lines exit 2
// with a message saying what to do. Labelled with the service tests but
// spawns real processes.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clmae/v1/coordinator.grpc.pb.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/grpc_client.h"
#include "tests/services/generic_call.h"
#include "tests/testing/files.h"

extern char** environ;

namespace clmae {
namespace {

using ::clmae::testing::ReadFileOrEmpty;

using ::testing::HasSubstr;

class CoordinatorMainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_coordinator_main_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }

  // Starts the binary with `args` and `extra_env`; output goes to files.
  void Spawn(const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> argv_storage = {CLMAE_COORDINATOR_BINARY};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (entry.rfind("CLMAE_", 0) != 0) env_storage.push_back(entry);
    }
    env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> envp;
    for (std::string& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, (dir_ + "/stdout").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, (dir_ + "/stderr").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
  }

  // Waits for the process to end; its exit code, or -signal.
  int Wait() {
    int status = 0;
    EXPECT_EQ(waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  // The port from --port_file, once written (or 0 if the process died).
  int AwaitPort(const std::string& port_file) {
    for (;;) {
      if (std::filesystem::exists(port_file)) return std::stoi(ReadFileOrEmpty(port_file));
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "exited before writing its port: " << ReadFileOrEmpty(dir_ + "/stderr");
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  grpc::Status ListWorkers(int port, const std::string& token) {
    ClientOptions options;
    options.address = "127.0.0.1:" + std::to_string(port);
    options.token = token;
    auto channel = MakeClientChannel(options);
    EXPECT_TRUE(channel.ok());
    auto stub = v1::Coordinator::NewStub(*channel);
    grpc::ClientContext context;
    AuthorizeCall(context, options);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ListWorkersResponse response;
    return stub->ListWorkers(&context, v1::ListWorkersRequest(), &response);
  }

  std::string dir_;
  pid_t pid_ = -1;
};

TEST_F(CoordinatorMainTest, ServesWritesItsPortAndExitsCleanlyOnSigterm) {
  const std::string port_file = dir_ + "/port";
  Spawn({"--listen=127.0.0.1:0", "--data-dir", dir_ + "/state", "--port-file", port_file,
         "--metrics_listen="},
        {"CLMAE_CLIENT_TOKEN=from-env-client", "CLMAE_WORKER_TOKEN=from-env-worker"});
  const int port = AwaitPort(port_file);
  ASSERT_GT(port, 0);
  EXPECT_EQ(ListWorkers(port, "from-env-client").error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(ListWorkers(port, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListWorkers(port, "from-env-worker").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state/coordinator.db"));

  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  EXPECT_EQ(Wait(), 0) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/stdout"),
            "clmae-coordinator listening on 127.0.0.1:" + std::to_string(port) + "\n");
}

// Reflection answers without a token: off unless --reflection, while health
// (for probes) stays open.
TEST_F(CoordinatorMainTest, ServerReflectionIsOffUnlessAskedFor) {
  const std::string port_file = dir_ + "/port";
  Spawn({"--data_dir", dir_ + "/state", "--listen", "127.0.0.1:0", "--port_file", port_file,
         "--metrics_listen", ""},
        {"CLMAE_CLIENT_TOKEN=c", "CLMAE_WORKER_TOKEN=w"});
  const int port = AwaitPort(port_file);
  ASSERT_GT(port, 0);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  absl::StatusOr<std::string> listing = ::clmae::testing::CallOnce(
      channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      ::clmae::testing::LengthDelimited(7, ""));
  EXPECT_EQ(listing.status().code(), absl::StatusCode::kUnimplemented) << listing.status();
  EXPECT_TRUE(::clmae::testing::CallOnce(channel, "/grpc.health.v1.Health/Check", "").ok());
  kill(pid_, SIGTERM);
  EXPECT_EQ(Wait(), 0);
}

TEST_F(CoordinatorMainTest, ReadsATokensFileOfPrincipalsAndDigests) {
  const std::string tokens = dir_ + "/tokens";
  std::ofstream(tokens) << "# test tokens\nops operator sha256:" << Sha256Hex("file-operator")
                        << "\nalice user sha256:" << Sha256Hex("file-user")
                        << "\nnode-1 worker sha256:" << Sha256Hex("file-worker") << "\n";
  std::filesystem::permissions(
      tokens, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const std::string port_file = dir_ + "/port";
  Spawn({"--listen=127.0.0.1:0", "--data_dir=" + dir_ + "/state", "--tokens_file=" + tokens,
         "--port_file=" + port_file, "--metrics_listen="});
  const int port = AwaitPort(port_file);
  ASSERT_GT(port, 0);
  EXPECT_EQ(ListWorkers(port, "file-operator").error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(ListWorkers(port, "file-user").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ListWorkers(port, "file-worker").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ListWorkers(port, Sha256Hex("file-operator")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);  // the digest is not the token
  ASSERT_EQ(kill(pid_, SIGINT), 0);
  EXPECT_EQ(Wait(), 0);
}

TEST_F(CoordinatorMainTest, BadCommandLinesExit2SayingWhatToDo) {
  const std::string cert_tokens = dir_ + "/cert-tokens";
  std::ofstream(cert_tokens) << "node-1 worker cert\n";
  std::filesystem::permissions(
      cert_tokens, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--data_dir=" + dir_, "--no_such_flag"}, "--help"},
      {{"--listen=127.0.0.1:0"}, "--data_dir is required"},
      {{"--data_dir=" + dir_}, "--insecure_no_auth"},
      {{"--data_dir=" + dir_, "--insecure_no_auth", "--lease=soon"}, "--lease"},
      {{"--data_dir=" + dir_, "--insecure_no_auth", "--master_port_range=9-1"},
       "--master_port_range"},
      {{"--data_dir=" + dir_, "--insecure_no_auth", "--lease=5s", "--heartbeat_interval=10s"},
       "heartbeat"},
      {{"--data_dir=" + dir_, "--tokens_file=" + dir_ + "/none"}, "/none"},
      {{"--data_dir=" + dir_, "--tokens_file=" + cert_tokens}, "needs mutual TLS"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    Spawn(c.args);
    EXPECT_EQ(Wait(), 2);
    EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stderr"), HasSubstr(c.says));
  }
}

}  // namespace
}  // namespace clmae
