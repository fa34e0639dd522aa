#include "worker/process/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/process/process_test_util.h"

namespace clmae {
namespace {

using ::clmae::testing::PidGone;
using ::clmae::testing::ReadFileOrEmpty;
using ::clmae::testing::TempDir;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kSafetyNet = absl::Seconds(30);

SpawnOptions Shell(const std::string& script) {
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", script};
  return options;
}

class SubprocessTest : public ::testing::Test {
 protected:
  // Orphaned grandchildren become ours, so the tests can reap them and see
  // how they ended instead of racing init.
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

  // Output as LineOutput delivers it: "out: ..." / "err: ...".
  LineOutput Collect() {
    return LineOutput{[this](OutputStream stream, absl::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back((stream == OutputStream::kStdout ? "out: " : "err: ") + std::string(line));
    }};
  }
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  std::unique_ptr<Subprocess> MustSpawn(const SpawnOptions& options) {
    auto child = Subprocess::Spawn(options);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? *std::move(child) : nullptr;
  }

  TempDir dir_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST_F(SubprocessTest, ReportsExitCode) {
  auto child = MustSpawn(Shell("exit 3"));
  ASSERT_NE(child, nullptr);
  std::optional<ExitStatus> status = child->Wait(kSafetyNet);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, ExitStatus::Exited(3));
  EXPECT_EQ(child->TryWait(), status);  // remembered
}

TEST_F(SubprocessTest, ReportsDeathBySignal) {
  auto child = MustSpawn(Shell("kill -KILL $$"));
  ASSERT_NE(child, nullptr);
  std::optional<ExitStatus> status = child->Wait(kSafetyNet);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->ToString(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(status->ShellCode(), 137);
}

TEST_F(SubprocessTest, PassesEnvironmentAndWorkingDir) {
  setenv("CLMAE_PROCESS_TEST_INHERITED", "from-parent", 1);
  setenv("CLMAE_PROCESS_TEST_OVERRIDDEN", "old", 1);
  SpawnOptions options =
      Shell("echo \"$CLMAE_PROCESS_TEST_INHERITED $CLMAE_PROCESS_TEST_OVERRIDDEN $EXTRA\"; pwd -P");
  options.env = {{"CLMAE_PROCESS_TEST_OVERRIDDEN", "new"}, {"EXTRA", "x y"}};
  options.working_dir = dir_.path();
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.path().c_str(), resolved), nullptr);
  EXPECT_THAT(Lines(), ElementsAre("out: from-parent new x y", std::string("out: ") + resolved));
}

TEST_F(SubprocessTest, AllOutputIsDeliveredBeforeWaitReturns) {
  SpawnOptions options = Shell(
      "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done; "
      "echo oops >&2");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 501u);
  EXPECT_EQ(lines[0], "out: line 0");
  EXPECT_THAT(lines, Contains("out: line 499"));
  EXPECT_THAT(lines, Contains("err: oops"));
}

TEST_F(SubprocessTest, MissingProgramFailsSpawnWithItsName) {
  SpawnOptions options;
  options.argv = {"/nonexistent/clmae-trainer"};
  auto child = Subprocess::Spawn(options);
  ASSERT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("/nonexistent/clmae-trainer"));
  EXPECT_THAT(child.status().message(), HasSubstr("No such file or directory"));

  options.argv = {"clmae-no-such-program-on-path"};
  EXPECT_TRUE(absl::IsNotFound(Subprocess::Spawn(options).status()));
}

TEST_F(SubprocessTest, NonExecutableFileFailsSpawnWithPermissionDenied) {
  std::string script = dir_.File("script.sh");
  clmae::testing::WriteFile(script, "#!/bin/sh\nexit 0\n");
  chmod(script.c_str(), 0644);
  SpawnOptions options;
  options.argv = {script};
  auto child = Subprocess::Spawn(options);
  EXPECT_TRUE(absl::IsPermissionDenied(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr(script));
}

TEST_F(SubprocessTest, UnknownExecutableFormatFailsSpawn) {
  std::string program = dir_.File("garbage");
  clmae::testing::WriteFile(program, std::string("\x7f"
                                                 "ELF but not really",
                                                 19));
  chmod(program.c_str(), 0755);
  SpawnOptions options;
  options.argv = {program};
  auto child = Subprocess::Spawn(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("Exec format error"));
}

TEST_F(SubprocessTest, MissingWorkingDirFailsSpawn) {
  SpawnOptions options = Shell("exit 0");
  options.working_dir = dir_.File("missing");
  auto child = Subprocess::Spawn(options);
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("working_dir"));
}

TEST_F(SubprocessTest, LogFileGetsBothStreamsAppended) {
  std::string log = dir_.File("rank0.log");
  clmae::testing::WriteFile(log, "earlier run\n");
  SpawnOptions options = Shell("echo to-stdout; echo to-stderr >&2");
  options.output = LogFileOutput{log};
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
  EXPECT_EQ(ReadFileOrEmpty(log), "earlier run\nto-stdout\nto-stderr\n");
}

TEST_F(SubprocessTest, LogFileIsCreatedWithMode0644) {
  std::string log = dir_.File("new.log");
  mode_t old_umask = umask(022);
  SpawnOptions options = Shell("echo hi");
  options.output = LogFileOutput{log};
  auto child = MustSpawn(options);
  umask(old_umask);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
  struct stat st;
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(ReadFileOrEmpty(log), "hi\n");
}

TEST_F(SubprocessTest, UnopenableLogFileFailsSpawn) {
  SpawnOptions options = Shell("exit 0");
  options.output = LogFileOutput{dir_.File("no/such/dir/x.log")};
  auto child = Subprocess::Spawn(options);
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("x.log"));
}

TEST_F(SubprocessTest, WaitTimesOutOnARunningChildAndSignalReachesIt) {
  SpawnOptions options = Shell(
      "trap 'echo got-usr1; exit 5' USR1; echo ready; "
      "while :; do sleep 0.05; done");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->TryWait(), std::nullopt);
  EXPECT_EQ(child->Wait(absl::Milliseconds(50)), std::nullopt);
  // The trap is set before "ready" is printed.
  const absl::Time deadline = absl::Now() + kSafetyNet;
  while (Lines().empty() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_THAT(Lines(), ElementsAre("out: ready"));
  ASSERT_TRUE(child->Signal(SIGUSR1).ok());
  EXPECT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(5));
  // The group's `sleep` dies of it too (the shell may say so on stderr).
  EXPECT_THAT(Lines(), Contains("out: got-usr1"));
  // Reaped: its pid is no longer ours to signal.
  EXPECT_TRUE(absl::IsFailedPrecondition(child->Signal(SIGTERM)));
}

TEST_F(SubprocessTest, TerminateLetsAChildExitOnSigterm) {
  SpawnOptions options = Shell("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  const absl::Time deadline = absl::Now() + kSafetyNet;
  while (Lines().empty() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(child->Terminate(kSafetyNet), ExitStatus::Exited(7));
}

TEST_F(SubprocessTest, TerminateKillsAChildThatIgnoresSigterm) {
  SpawnOptions options = Shell("trap '' TERM; echo ready; while :; do sleep 0.05; done");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  const absl::Time deadline = absl::Now() + kSafetyNet;
  while (Lines().empty() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  pid_t pid = child->pid();
  EXPECT_EQ(child->Terminate(absl::Milliseconds(200)), ExitStatus::Signaled(SIGKILL));
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(SubprocessTest, EndOfAChildKillsWhatItLeftInItsGroup) {
  // The shell starts a background sleep, reports its pid and exits.
  SpawnOptions options = Shell("sleep 600 & echo $!");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
  ASSERT_EQ(Lines().size(), 1u);
  int grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Lines()[0].substr(5), &grandchild)) << Lines()[0];
  int status = 0;
  ASSERT_TRUE(PidGone(grandchild, kSafetyNet, &status));
  EXPECT_EQ(ExitStatus::FromWaitStatus(status), ExitStatus::Signaled(SIGKILL));
}

TEST_F(SubprocessTest, DescriptorsLeakedWithoutCloexecDoNotReachTheChild) {
  int leaked = open("/dev/null", O_RDONLY);  // no O_CLOEXEC, as careless code does
  ASSERT_GE(leaked, 3);
  auto child = MustSpawn(Shell(absl::StrCat("[ -e /proc/$$/fd/", leaked, " ] && exit 1; exit 0")));
  close(leaked);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kSafetyNet), ExitStatus::Exited(0));
}

TEST_F(SubprocessTest, DestructorLeavesNoOrphans) {
  SpawnOptions options = Shell("sleep 600 & echo $!; wait");
  options.output = Collect();
  auto child = MustSpawn(options);
  ASSERT_NE(child, nullptr);
  const absl::Time deadline = absl::Now() + kSafetyNet;
  while (Lines().empty() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(Lines().size(), 1u);
  int grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Lines()[0].substr(5), &grandchild)) << Lines()[0];
  pid_t pid = child->pid();
  child.reset();
  // Reaped by the destructor: no zombie either.
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_TRUE(PidGone(grandchild, kSafetyNet));
}

TEST_F(SubprocessTest, ChildDiesWithTheThreadThatSpawnedIt) {
  // PR_SET_PDEATHSIG follows the spawning thread, not the process.
  std::unique_ptr<Subprocess> child;
  std::thread spawner([&] { child = MustSpawn(Shell("exec sleep 600")); });
  spawner.join();
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kSafetyNet), ExitStatus::Signaled(SIGKILL));
}

TEST_F(SubprocessTest, ChildDoesNotInheritBlockedSignals) {
  sigset_t usr1, saved;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &saved);
  auto child = MustSpawn(Shell("kill -USR1 $$; sleep 5; exit 0"));
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kSafetyNet), ExitStatus::Signaled(SIGUSR1));
}

TEST_F(SubprocessTest, ChildDoesNotInheritAnIgnoredSigpipe) {
  // Servers commonly ignore SIGPIPE; a shell cannot undo an inherited ignore.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction previous;
  sigaction(SIGPIPE, &ignore, &previous);
  auto child = MustSpawn(Shell("kill -PIPE $$; exit 0"));
  sigaction(SIGPIPE, &previous, nullptr);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kSafetyNet), ExitStatus::Signaled(SIGPIPE));
}

}  // namespace
}  // namespace clmae
