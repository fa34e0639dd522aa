#include "worker/process/signal_catcher.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SignalCatcherTest, QueuesCaughtSignalsInOrderAndRestoresDispositions) {
  {
    auto catcher = SignalCatcher::Install({SIGUSR1, SIGUSR2});
    ASSERT_TRUE(catcher.ok()) << catcher.status();
    EXPECT_THAT((*catcher)->TakePending(), IsEmpty());
    ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    pollfd pfd{(*catcher)->fd(), POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 30000), 1);
    // kill() to oneself delivers before it returns (signal unblocked here).
    EXPECT_THAT((*catcher)->TakePending(), ElementsAre(SIGUSR2, SIGUSR1));
    EXPECT_THAT((*catcher)->TakePending(), IsEmpty());
  }
  struct sigaction now;
  sigaction(SIGUSR1, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(SignalCatcherTest, OnlyOneAtATime) {
  auto first = SignalCatcher::Install({SIGUSR1});
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(SignalCatcher::Install({SIGUSR2}).status()));
  first->reset();
  EXPECT_TRUE(SignalCatcher::Install({SIGUSR2}).ok());
}

TEST(SignalCatcherTest, RefusesUncatchableSignals) {
  EXPECT_TRUE(absl::IsInvalidArgument(SignalCatcher::Install({SIGKILL}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(SignalCatcher::Install({0}).status()));
  // The refusal left no catcher behind.
  EXPECT_TRUE(SignalCatcher::Install({SIGUSR1}).ok());
}

}  // namespace
}  // namespace clmae
