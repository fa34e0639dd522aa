#include "worker/process/local_launcher.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/process/process_test_util.h"

namespace clmae {
namespace {

using ::clmae::testing::PidGone;
using ::clmae::testing::ReadFileOrEmpty;
using ::clmae::testing::TempDir;
using ::clmae::testing::WaitForFile;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// What a launch printed and returned.
struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

class LocalLauncherTest : public ::testing::Test {
 protected:
  // Runs the launcher with this process's stdout/stderr sent to files.
  Outcome Run(LocalLauncherOptions options) {
    if (options.program_name.empty()) options.program_name = "clmae-train";
    std::string out_path = dir_.File("launcher.out");
    std::string err_path = dir_.File("launcher.err");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO);
    int saved_err = dup(STDERR_FILENO);
    int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    Outcome outcome;
    outcome.code = RunLocalLauncher(options);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    for (int fd : {saved_out, saved_err, out_fd, err_fd}) close(fd);
    outcome.out = ReadFileOrEmpty(out_path);
    outcome.err = ReadFileOrEmpty(err_path);
    return outcome;
  }

  // `nproc` ranks of `/bin/sh -c script`, with $D set to the temp folder.
  LocalLauncherOptions Ranks(int nproc, const std::string& script) {
    LocalLauncherOptions options;
    options.nproc = nproc;
    options.argv = {"/bin/sh", "-c", absl::StrCat("D='", dir_.path(), "'; ", script)};
    return options;
  }

  // Runs 2 ranks; once both wrote $D/ready.$RANK, sends `signo` to this
  // process, as a user or an orchestrator would to the launcher.
  Outcome RunAndSignal(const LocalLauncherOptions& options, int signo) {
    std::thread sender([&] {
      if (WaitForFile(dir_.File("ready.0")) && WaitForFile(dir_.File("ready.1"))) {
        kill(getpid(), signo);
      }
    });
    Outcome outcome = Run(options);
    sender.join();
    return outcome;
  }

  pid_t PidOfRank(int rank) {
    int pid = 0;
    std::string text = ReadFileOrEmpty(dir_.File(absl::StrCat("pid.", rank)));
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid)) << text;
    return pid;
  }

  TempDir dir_;
};

// A bounded wait loop: ranks that are never stopped still end (60 s), so a
// broken launcher fails the test instead of hanging it.
constexpr char kIdle[] = "i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done";

TEST_F(LocalLauncherTest, EachRankGetsItsRendezvousVariables) {
  Outcome outcome = Run(
      Ranks(3,
            "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT\" "
            "> \"$D/env.$RANK\""));
  ASSERT_EQ(outcome.code, 0) << outcome.err;
  std::string port;
  for (int rank = 0; rank < 3; ++rank) {
    std::vector<std::string> fields = absl::StrSplit(
        absl::StripAsciiWhitespace(ReadFileOrEmpty(dir_.File(absl::StrCat("env.", rank)))), ' ');
    ASSERT_EQ(fields.size(), 6u) << "rank " << rank;
    EXPECT_EQ(fields[0], absl::StrCat(rank));
    EXPECT_EQ(fields[1], absl::StrCat(rank));
    EXPECT_EQ(fields[2], "3");
    EXPECT_EQ(fields[3], "3");
    EXPECT_EQ(fields[4], "127.0.0.1");
    if (rank == 0) port = fields[5];
    EXPECT_EQ(fields[5], port) << "every rank meets at the same port";
  }
  int port_number = 0;
  ASSERT_TRUE(absl::SimpleAtoi(port, &port_number));
  EXPECT_GT(port_number, 0);
  EXPECT_LT(port_number, 65536);
}

TEST_F(LocalLauncherTest, GivenMasterAddressAndPortArePassedThrough) {
  LocalLauncherOptions options = Ranks(2, "echo \"$MASTER_ADDR:$MASTER_PORT\"");
  options.master_addr = "10.1.2.3";
  options.master_port = 29500;
  Outcome outcome = Run(options);
  ASSERT_EQ(outcome.code, 0) << outcome.err;
  std::vector<std::string> out = absl::StrSplit(outcome.out, '\n');
  EXPECT_THAT(out, Contains("10.1.2.3:29500"));
  EXPECT_THAT(out, Contains("[rank 1] 10.1.2.3:29500"));
}

TEST_F(LocalLauncherTest, RankZeroPassesThroughAndOthersArePrefixedByLine) {
  Outcome outcome = Run(
      Ranks(2,
            "echo \"out $RANK\"; echo \"err $RANK\" >&2; "
            "printf 'split '; sleep 0.1; printf 'line %s\\n' $RANK; printf 'no newline %s' $RANK"));
  ASSERT_EQ(outcome.code, 0) << outcome.err;
  std::vector<std::string> out = absl::StrSplit(outcome.out, '\n');
  std::vector<std::string> err = absl::StrSplit(outcome.err, '\n');
  EXPECT_THAT(out, Contains("out 0"));
  EXPECT_THAT(out, Contains("split line 0"));
  EXPECT_THAT(out, Contains("[rank 1] out 1"));
  EXPECT_THAT(out, Contains("[rank 1] split line 1"));
  EXPECT_THAT(out, Contains("[rank 1] no newline 1"));
  EXPECT_THAT(err, Contains("err 0"));
  EXPECT_THAT(err, Contains("[rank 1] err 1"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("[rank 0]")));
  EXPECT_THAT(outcome.err, Not(HasSubstr("out 1")));
}

TEST_F(LocalLauncherTest, AllRanksSucceedingIsSuccess) {
  Outcome outcome = Run(Ranks(4, "exit 0"));
  EXPECT_EQ(outcome.code, 0);
  EXPECT_EQ(outcome.err, "");
}

TEST_F(LocalLauncherTest, FirstFailureStopsTheOthersAndGivesItsExitCode) {
  // Rank 1 fails once ranks 0 and 2 are up; they would idle for a minute.
  Outcome outcome = Run(Ranks(
      3,
      absl::StrCat(
          "echo $$ > \"$D/pid.$RANK\"; if [ $RANK = 1 ]; then "
          "while [ ! -s \"$D/pid.0\" ] || [ ! -s \"$D/pid.2\" ]; do sleep 0.02; done; exit 3; fi; ",
          kIdle)));
  EXPECT_EQ(outcome.code, 3);
  EXPECT_THAT(outcome.err,
              HasSubstr("clmae-train: rank 1 failed (exit code 3); stopping the other ranks\n"));
  for (int rank : {0, 2}) {
    pid_t pid = PidOfRank(rank);
    EXPECT_EQ(kill(pid, 0), -1) << "rank " << rank << " still runs";
    EXPECT_EQ(errno, ESRCH);
  }
}

TEST_F(LocalLauncherTest, RankKilledBySignalGivesShellCode) {
  Outcome outcome =
      Run(Ranks(2, absl::StrCat("if [ $RANK = 1 ]; then kill -KILL $$; fi; ", kIdle)));
  EXPECT_EQ(outcome.code, 137);
  EXPECT_THAT(outcome.err, HasSubstr("rank 1 failed (killed by signal 9 (SIGKILL))"));
}

TEST_F(LocalLauncherTest, SingleRankPassesItsOutputAndExitCodeThrough) {
  Outcome outcome = Run(Ranks(1, "echo hi; echo warn >&2; exit 5"));
  EXPECT_EQ(outcome.code, 5);
  EXPECT_EQ(outcome.out, "hi\n");
  EXPECT_EQ(outcome.err, "warn\nclmae-train: rank 0 failed (exit code 5)\n");
}

TEST_F(LocalLauncherTest, RankIgnoringSigtermIsKilledAfterTheGrace) {
  LocalLauncherOptions options = Ranks(
      2, absl::StrCat(
             "if [ $RANK = 1 ]; then while [ ! -s \"$D/pid.0\" ]; do sleep 0.02; done; exit 4; fi; "
             "trap '' TERM; echo $$ > \"$D/pid.$RANK\"; ",
             kIdle));
  options.grace = absl::Milliseconds(300);
  Outcome outcome = Run(options);
  EXPECT_EQ(outcome.code, 4);
  EXPECT_THAT(outcome.err, HasSubstr("rank 0 did not stop within 0.3s; killing it"));
  EXPECT_TRUE(PidGone(PidOfRank(0), absl::ZeroDuration()));
}

TEST_F(LocalLauncherTest, ForwardsSigtermToEveryRank) {
  LocalLauncherOptions options = Ranks(
      2, absl::StrCat(
             "trap 'echo TERM > \"$D/got.$RANK\"; exit 0' TERM; echo up > \"$D/ready.$RANK\"; ",
             kIdle));
  Outcome outcome = RunAndSignal(options, SIGTERM);
  EXPECT_EQ(outcome.code, 143);
  EXPECT_THAT(outcome.err, HasSubstr("clmae-train: received SIGTERM; stopping 2 ranks"));
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("got.0")), "TERM\n");
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("got.1")), "TERM\n");
}

TEST_F(LocalLauncherTest, ForwardsSigintAndReturns130) {
  LocalLauncherOptions options = Ranks(
      2,
      absl::StrCat("trap 'echo INT > \"$D/got.$RANK\"; exit 0' INT; echo up > \"$D/ready.$RANK\"; ",
                   kIdle));
  Outcome outcome = RunAndSignal(options, SIGINT);
  EXPECT_EQ(outcome.code, 130);
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("got.0")), "INT\n");
  EXPECT_EQ(ReadFileOrEmpty(dir_.File("got.1")), "INT\n");
}

TEST_F(LocalLauncherTest, MissingProgramIsReportedClearly) {
  LocalLauncherOptions options;
  options.nproc = 2;
  options.argv = {"/nonexistent/clmae-train-missing", "--config", "x.yaml"};
  Outcome outcome = Run(options);
  EXPECT_EQ(outcome.code, 127);
  EXPECT_THAT(outcome.err, HasSubstr("clmae-train: cannot start rank 0: "));
  EXPECT_THAT(outcome.err, HasSubstr("/nonexistent/clmae-train-missing"));
  EXPECT_THAT(outcome.err, HasSubstr("No such file or directory"));
}

TEST_F(LocalLauncherTest, InvalidOptionsAreRefusedWithTheField) {
  LocalLauncherOptions options = Ranks(0, "exit 0");
  Outcome outcome = Run(options);
  EXPECT_EQ(outcome.code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("--nproc must be at least 1, got 0"));

  options = Ranks(1, "exit 0");
  options.master_port = 70000;
  outcome = Run(options);
  EXPECT_EQ(outcome.code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("70000"));
}

TEST(PickFreeLocalPortTest, PortCanBeBound) {
  absl::StatusOr<int> port = PickFreeLocalPort();
  ASSERT_TRUE(port.ok()) << port.status();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(*port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
}

}  // namespace
}  // namespace clmae
