// Preemption: ranks that stop on request after checkpointing (exit
// kTrainerExitStopped) requeue their job without using a restart, and a
// drained worker's jobs are asked to stop so they move elsewhere.

#include <csignal>

#include "common/exit_codes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class CoordinatorPreemptionTest : public CoordinatorFixture {
 protected:
  CoordinatorOptions Options() override {
    CoordinatorOptions options = CoordinatorFixture::Options();
    options.preempt_grace = absl::Seconds(240);
    return options;
  }
};

TEST_F(CoordinatorPreemptionTest, StoppedRanksRequeueWithoutUsingARestart) {
  auto a = Attach("a", 2);
  // No restarts at all: a failure would end the job, a preemption must not.
  const std::string id = Submit(CpuSpec("evicted", 2, /*max_restarts=*/0));
  auto first = a->Assigns();
  Started("a", first);
  a->Clear();

  ASSERT_TRUE(Report("a", first[0], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(job.failure_message(), HasSubstr("preempted"));
  ASSERT_THAT(a->Cancels(), SizeIs(1));
  EXPECT_EQ(a->Cancels()[0].grace().seconds(), 240);

  ASSERT_TRUE(Report("a", first[1], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_EQ(job.preemptions(), 1);
  EXPECT_THAT(a->Assigns(), SizeIs(2));
}

TEST_F(CoordinatorPreemptionTest, AFailureAfterAPreemptionStillCountsAsAFailure) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("evicted-then-crash", 1, /*max_restarts=*/0));
  Started("a", a->Assigns());
  ASSERT_TRUE(Report("a", a->Assigns()[0], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  auto second = a->Assigns();
  ASSERT_THAT(second, SizeIs(2));
  Started("a", {second[1]});
  ASSERT_TRUE(Report("a", second[1], v1::TaskStatus::EXITED, 134).ok());
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.preemptions(), 1);
  EXPECT_EQ(job.restarts(), 0);
}

TEST_F(CoordinatorPreemptionTest, DrainingMovesTheWorkersJobsElsewhere) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("mover", 1));
  auto first = a->Assigns();
  ASSERT_THAT(first, SizeIs(1));
  Started("a", first);
  auto b = Attach("b", 1);
  a->Clear();

  ASSERT_TRUE(coordinator_->SetWorkerDraining("a", true).ok());
  ASSERT_THAT(a->Cancels(), SizeIs(1));
  EXPECT_EQ(a->Cancels()[0].grace().seconds(), 240);
  EXPECT_THAT(a->Cancels()[0].reason(), HasSubstr("draining"));
  // A trainer that dies of the SIGTERM without its own handler also counts
  // as moved, not failed.
  ASSERT_TRUE(Report("a", first[0], v1::TaskStatus::EXITED, 0, SIGTERM).ok());
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(job.preemptions(), 1);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_EQ(job.placement().ranks(0).worker_id(), "b");
  EXPECT_THAT(a->Assigns(), IsEmpty());
  EXPECT_THAT(b->Assigns(), SizeIs(1));
}

TEST_F(CoordinatorPreemptionTest, APreemptionSurvivesACoordinatorRestart) {
  auto a = Attach("a", 2);
  const std::string id = Submit(CpuSpec("evicted", 2, /*max_restarts=*/0));
  auto first = a->Assigns();
  Started("a", first);
  ASSERT_TRUE(Report("a", first[0], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  ASSERT_EQ(State(id), v1::JOB_STATE_RESTARTING);

  Reopen();
  a = Attach("a", 2, {AsTask(first[1])});
  ASSERT_TRUE(Report("a", first[1], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  Pass(absl::Seconds(12), {"a"});
  const v1::Job job = Get(id);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_EQ(job.preemptions(), 1);
}

}  // namespace
}  // namespace clmae
