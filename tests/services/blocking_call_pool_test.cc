#include "services/blocking_call_pool.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

TEST(BlockingCallPoolTest, AsManyTasksWaitAtOnceAsThereAreThreads) {
  constexpr int kThreads = 8;
  auto pool = std::make_unique<BlockingCallPool>(kThreads);
  absl::Mutex mu;
  int waiting = 0;
  int released = 0;
  for (int i = 0; i < kThreads; ++i) {
    pool->Schedule([&] {
      absl::MutexLock lock(&mu);
      ++waiting;
      // Each task blocks until all of them are blocked at once: they can
      // only all get here if each has its own thread. (The deadline only
      // keeps a broken pool from hanging the test.)
      const auto all = [&] {
        mu.AssertReaderHeld();
        return waiting == kThreads;
      };
      if (mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30))) ++released;
    });
  }
  pool.reset();  // waits for the tasks
  absl::MutexLock lock(&mu);
  EXPECT_EQ(released, kThreads);
}

TEST(BlockingCallPoolTest, EveryScheduledTaskRunsBeforeDestructionEnds) {
  std::atomic<int> ran{0};
  {
    BlockingCallPool pool(1);
    for (int i = 0; i < 100; ++i) pool.Schedule([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 100);
}

TEST(BlockingCallPoolTest, AtLeastOneThread) {
  std::atomic<int> ran{0};
  {
    BlockingCallPool pool(0);
    pool.Schedule([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 1);
}

}  // namespace
}  // namespace clmae
