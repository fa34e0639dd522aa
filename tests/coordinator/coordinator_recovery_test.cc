#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class CoordinatorRecoveryTest : public CoordinatorFixture {};

TEST_F(CoordinatorRecoveryTest, ReconcilesWithReattachingAgentsAfterARestart) {
  auto a = Attach("a", 3);
  auto b = Attach("b", 1);
  const std::string lost = Submit(CpuSpec("lost", 1));  // best fit: b
  const std::string kept = Submit(CpuSpec("kept", 2));  // both ranks on a
  const auto on_a = a->Assigns();
  const auto on_b = b->Assigns();
  ASSERT_THAT(on_a, SizeIs(2));
  ASSERT_THAT(on_b, SizeIs(1));
  Started("a", on_a);
  Started("b", on_b);
  ASSERT_EQ(State(kept), v1::JOB_STATE_RUNNING);

  Reopen();  // the coordinator dies; agents and trainers keep running
  EXPECT_EQ(State(kept), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(State(lost), v1::JOB_STATE_RUNNING);
  const std::string queued = Submit(CpuSpec("queued", 1));

  // a re-attaches with the kept job's ranks and one task nobody knows.
  v1::Task orphan;
  orphan.set_job_id("job-from-another-life");
  orphan.set_attempt(1);
  orphan.set_rank(0);
  orphan.set_device_index(2);
  orphan.set_device_kind("cpu");
  auto a2 = Attach("a", 3, {AsTask(on_a[0]), AsTask(on_a[1]), orphan});
  ASSERT_THAT(a2->Cancels(), SizeIs(1));
  EXPECT_EQ(a2->Cancels()[0].job_id(), "job-from-another-life");
  // Nothing is placed during the reconciliation window, and the orphan's
  // slot stays busy until it is reported gone.
  EXPECT_EQ(State(queued), v1::JOB_STATE_PENDING);
  EXPECT_EQ(coordinator_->ListWorkers()[0].free_cpu_slots(), 0);

  // b may still come back: agents get the lease plus their reconnection
  // back-off (the recovery grace, 40 s here) to re-attach.
  Pass(absl::Seconds(38), {"a"});
  EXPECT_EQ(State(lost), v1::JOB_STATE_RUNNING);
  Pass(absl::Seconds(4), {"a"});
  v1::Job job = Get(lost);  // b never did: its rank is lost, the job requeued
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(State(kept), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(a2->Assigns(), IsEmpty());  // a is full: the orphan still runs

  v1::TaskStatus gone;
  gone.set_job_id(orphan.job_id());
  gone.set_attempt(1);
  gone.set_rank(0);
  gone.set_state(v1::TaskStatus::EXITED);
  gone.set_signal(15);
  ASSERT_TRUE(coordinator_->TaskStatus("a", gone).ok());
  Settle();
  ASSERT_THAT(a2->Assigns(), SizeIs(1));  // the freed slot: oldest first
  EXPECT_EQ(a2->Assigns()[0].job_id(), lost);
  EXPECT_EQ(a2->Assigns()[0].attempt(), 2);

  for (const auto& t : on_a) ASSERT_TRUE(Report("a", t, v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(kept), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoordinatorRecoveryTest, ExitDuringTheOutageIsReportedAfterReattach) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("quick", 1));
  const auto assigns = a->Assigns();
  Started("a", assigns);
  Reopen();
  // The trainer finished while the coordinator was down: the agent lists
  // nothing running, then reports the exit it kept.
  Attach("a", 1);
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(Report("a", assigns[0], v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoordinatorRecoveryTest, ReconnectWithinTheLeaseKeepsRunningRanks) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("steady", 1));
  const auto assigns = a->Assigns();
  Started("a", assigns);
  auto a2 = Attach("a", 1, {AsTask(assigns[0])});  // a new stream
  coordinator_->AgentDetached("a", a.get());       // the old one closes late
  ASSERT_TRUE(Progress(id, 1, 0, 1).ok());
  Pass(absl::Seconds(30), {"a"});
  ASSERT_TRUE(Progress(id, 1, 0, 2).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(coordinator_->Cancel(id, "").ok());
  EXPECT_THAT(a2->Cancels(), SizeIs(1));  // reaches the live stream
  EXPECT_THAT(a->Cancels(), IsEmpty());
}

TEST_F(CoordinatorRecoveryTest, AcknowledgedSubmissionsSurviveARestart) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(Submit(CpuSpec("j" + std::to_string(i), 1), "r" + std::to_string(i)));
  Reopen();
  for (const auto& id : ids) EXPECT_EQ(State(id), v1::JOB_STATE_PENDING);
  EXPECT_EQ(Submit(CpuSpec("j2", 1), "r2"), ids[2]);  // a retry after the restart
  auto a = Attach("a", 5);
  EXPECT_THAT(a->Assigns(), IsEmpty());  // reconciliation window
  Pass(absl::Seconds(12), {"a"});
  EXPECT_THAT(a->Assigns(), SizeIs(5));
}

}  // namespace
}  // namespace clmae
