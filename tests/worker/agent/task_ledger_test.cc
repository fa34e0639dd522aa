#include "worker/agent/task_ledger.h"

#include "gtest/gtest.h"

namespace clmae {
namespace {

v1::Task Task(int rank) {
  v1::Task task;
  task.set_job_id("j");
  task.set_attempt(1);
  task.set_rank(rank);
  task.set_device_kind("cpu");
  task.set_device_index(rank);
  return task;
}

v1::TaskStatus Exit(int rank, int code) {
  v1::TaskStatus status;
  status.set_job_id("j");
  status.set_attempt(1);
  status.set_rank(rank);
  status.set_state(v1::TaskStatus::EXITED);
  status.set_exit_code(code);
  return status;
}

// Takes every queued status, marking each written at `now`.
std::vector<v1::TaskStatus> Drain(TaskLedger& ledger, absl::Time now) {
  std::vector<v1::TaskStatus> out;
  while (auto s = ledger.Peek(absl::InfinitePast())) {
    out.push_back(*s);
    ledger.Written(now);
  }
  return out;
}

TEST(TaskLedgerTest, StartsWhileDetachedAreListedInTheNextRegisterNotQueued) {
  TaskLedger ledger(absl::Seconds(10));
  ledger.Started(Task(0));
  ledger.Started(Task(1));
  ledger.Exited(Exit(1, 0));
  const std::vector<v1::Task> running = ledger.Attach();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].rank(), 0);
  const std::vector<v1::TaskStatus> queued = Drain(ledger, absl::Now());
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].rank(), 1);
  EXPECT_EQ(queued[0].state(), v1::TaskStatus::EXITED);
}

TEST(TaskLedgerTest, StartsWhileAttachedAreQueuedAsRunning) {
  TaskLedger ledger(absl::Seconds(10));
  ledger.Attach();
  ledger.Started(Task(2));
  const std::vector<v1::TaskStatus> queued = Drain(ledger, absl::Now());
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].state(), v1::TaskStatus::RUNNING);
  EXPECT_EQ(ledger.RunningCount(), 1u);
}

TEST(TaskLedgerTest, ExitsWrittenShortlyBeforeABreakAreSentAgain) {
  TaskLedger ledger(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ledger.Attach();
  ledger.Exited(Exit(0, 0));
  ASSERT_EQ(Drain(ledger, t0).size(), 1u);
  ledger.Exited(Exit(1, 3));
  ASSERT_EQ(Drain(ledger, t0 + absl::Seconds(20)).size(), 1u);
  // The stream breaks 25 s in: rank 1's exit (5 s before) may have been
  // lost with it, rank 0's (25 s before, beyond the window) arrived.
  ledger.Detach(t0 + absl::Seconds(25));
  ledger.Attach();
  const std::vector<v1::TaskStatus> again = Drain(ledger, t0 + absl::Seconds(30));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].rank(), 1);
  EXPECT_EQ(again[0].exit_code(), 3);
}

TEST(TaskLedgerTest, PeekLeavesTheStatusQueuedUntilWritten) {
  TaskLedger ledger(absl::Seconds(10));
  ledger.Attach();
  ledger.Exited(Exit(0, 1));
  ASSERT_TRUE(ledger.Peek(absl::InfinitePast()).has_value());
  // A write that failed: the stream ends without Written().
  ledger.Detach(absl::Now());
  ledger.Attach();
  EXPECT_EQ(Drain(ledger, absl::Now()).size(), 1u);
  EXPECT_TRUE(ledger.WaitDrained(absl::InfinitePast()));
}

TEST(TaskLedgerTest, InterruptWakesAWaitingPeek) {
  TaskLedger ledger(absl::Seconds(10));
  ledger.Attach();
  ledger.Interrupt();
  EXPECT_FALSE(ledger.Peek(absl::InfiniteFuture()).has_value());
  ledger.Exited(Exit(0, 0));
  EXPECT_FALSE(ledger.Peek(absl::InfiniteFuture()).has_value()) << "until the next Attach";
  ledger.Attach();
  EXPECT_TRUE(ledger.Peek(absl::InfiniteFuture()).has_value());
}

}  // namespace
}  // namespace clmae
