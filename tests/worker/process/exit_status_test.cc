#include "worker/process/exit_status.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace clmae {
namespace {

TEST(ExitStatusTest, ExitedReadsAsItsCode) {
  ExitStatus status = ExitStatus::Exited(1);
  EXPECT_EQ(status.ToString(), "exit code 1");
  EXPECT_EQ(status.ShellCode(), 1);
  EXPECT_FALSE(status.success());
  EXPECT_TRUE(ExitStatus::Exited(0).success());
}

TEST(ExitStatusTest, SignaledReadsAsTheSignalAndShellCode) {
  ExitStatus status = ExitStatus::Signaled(SIGKILL);
  EXPECT_EQ(status.ToString(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(status.ShellCode(), 137);
  EXPECT_FALSE(status.success());
  EXPECT_EQ(ExitStatus::Signaled(SIGTERM).ShellCode(), 143);
}

TEST(ExitStatusTest, FromWaitStatusDecodesExitAndSignal) {
  // Linux's wait status encoding: code << 8, or the signal number.
  EXPECT_EQ(ExitStatus::FromWaitStatus(3 << 8), ExitStatus::Exited(3));
  EXPECT_EQ(ExitStatus::FromWaitStatus(SIGSEGV), ExitStatus::Signaled(SIGSEGV));
}

TEST(ExitStatusTest, SignalNames) {
  EXPECT_EQ(SignalName(SIGINT), "SIGINT");
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(SIGRTMIN + 2), "SIGRTMIN+2");
  EXPECT_EQ(SignalName(200), "signal 200");
}

}  // namespace
}  // namespace clmae
