#include "coordinator/coordinator.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class CoordinatorTest : public CoordinatorFixture {};

TEST_F(CoordinatorTest, GangRunsToSuccess) {
  auto a = Attach("a", 2);
  ASSERT_EQ(a->All().size(), 1u);
  ASSERT_TRUE(a->All()[0].has_registered());
  EXPECT_EQ(a->All()[0].registered().lease().seconds(), 10);

  const std::string id = Submit(CpuSpec("tiny", 2));
  EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
  auto assigns = a->Assigns();
  ASSERT_THAT(assigns, SizeIs(2));
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(assigns[r].rank(), r);
    EXPECT_EQ(assigns[r].attempt(), 1);
    EXPECT_EQ(assigns[r].world_size(), 2);
    EXPECT_EQ(assigns[r].master_addr(), "a.cluster");
    EXPECT_EQ(assigns[r].master_port(), assigns[0].master_port());
    EXPECT_GE(assigns[r].master_port(), 29500);
    EXPECT_LE(assigns[r].master_port(), 29510);
    EXPECT_EQ(assigns[r].device_kind(), "cpu");
    EXPECT_EQ(assigns[r].spec().name(), "tiny");
  }
  EXPECT_EQ(coordinator_->ListWorkers()[0].free_cpu_slots(), 0);

  ASSERT_TRUE(Report("a", assigns[0], v1::TaskStatus::RUNNING).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);  // not every rank yet
  ASSERT_TRUE(Report("a", assigns[1], v1::TaskStatus::RUNNING).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);

  v1::ReportProgressRequest progress;
  progress.set_job_id(id);
  progress.set_attempt(1);
  progress.set_rank(0);
  progress.mutable_progress()->set_step(40);
  progress.mutable_progress()->set_curriculum_factor(-0.25);
  (*progress.mutable_result()->mutable_metrics())["knn_top1"] = 0.71;
  ASSERT_TRUE(coordinator_->ReportProgress(progress).ok());
  EXPECT_EQ(Get(id).progress().step(), 40);
  EXPECT_DOUBLE_EQ(Get(id).progress().curriculum_factor(), -0.25);

  ASSERT_TRUE(Report("a", assigns[1], v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(Report("a", assigns[0], v1::TaskStatus::EXITED, 0).ok());
  v1::Job done = Get(id);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(done.has_start_time());
  EXPECT_TRUE(done.has_end_time());
  EXPECT_DOUBLE_EQ(done.result().metrics().at("knn_top1"), 0.71);
  EXPECT_EQ(coordinator_->ListWorkers()[0].free_cpu_slots(), 2);
  EXPECT_EQ(Progress(id, 1, 0, 41).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorTest, SubmitIsValidatedAndIdempotent) {
  EXPECT_EQ(coordinator_->Submit(CpuSpec("bad", 0), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coordinator_->Submit(CpuSpec("x", 1), std::string(129, 'r')).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string id = Submit(CpuSpec("x", 1), "req-7");
  EXPECT_EQ(Submit(CpuSpec("x", 1), "req-7"), id);
  EXPECT_EQ(coordinator_->Submit(CpuSpec("y", 1), "req-7").status().code(),
            absl::StatusCode::kAlreadyExists);
  auto page = coordinator_->List(ListJobsQuery{});
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->jobs, SizeIs(1));
  EXPECT_EQ(page->jobs[0].state(), v1::JOB_STATE_PENDING);  // no worker yet
}

class ValidatingCoordinatorTest : public CoordinatorFixture {
 protected:
  CoordinatorOptions Options() override {
    CoordinatorOptions options = CoordinatorFixture::Options();
    options.validate_spec = [](const v1::JobSpec& spec) {
      return spec.name().empty() ? absl::InvalidArgumentError("name: empty") : absl::OkStatus();
    };
    return options;
  }
};

TEST_F(ValidatingCoordinatorTest, RefusedSpecsAreNotStored) {
  v1::JobSpec spec = CpuSpec("", 1);
  EXPECT_THAT(coordinator_->Submit(spec, "r").status().message(), HasSubstr("name"));
  EXPECT_THAT(coordinator_->List(ListJobsQuery{})->jobs, IsEmpty());
}

TEST_F(CoordinatorTest, WaitsForCapacityThenPlacesTheWholeGang) {
  auto a = Attach("a", 2);
  const std::string id = Submit(CpuSpec("three", 3));
  EXPECT_EQ(State(id), v1::JOB_STATE_PENDING);
  EXPECT_THAT(a->Assigns(), IsEmpty());  // never a partial gang
  auto b = Attach("b", 2);
  EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(a->Assigns(), SizeIs(2));
  ASSERT_THAT(b->Assigns(), SizeIs(1));
  EXPECT_EQ(b->Assigns()[0].rank(), 2);
  EXPECT_EQ(b->Assigns()[0].master_addr(), "a.cluster");
  const v1::Placement placement = Get(id).placement();
  EXPECT_EQ(placement.ranks(2).worker_id(), "b");
}

TEST_F(CoordinatorTest, HigherPriorityIsPlacedFirst) {
  const std::string low = Submit(CpuSpec("low", 1, 3, 0));
  const std::string high = Submit(CpuSpec("high", 1, 3, 5));
  auto a = Attach("a", 1);
  EXPECT_EQ(State(high), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(State(low), v1::JOB_STATE_PENDING);
  ASSERT_TRUE(Report("a", a->Assigns()[0], v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(low), v1::JOB_STATE_SCHEDULED);  // the freed slot goes to it
}

TEST_F(CoordinatorTest, AJobThatDoesNotFitHoldsItsQueueUntilCancelled) {
  auto a = Attach("a", 2);
  const std::string big = Submit(CpuSpec("big", 3));
  const std::string small = Submit(CpuSpec("small", 1));
  // Strict order: the small job does not pass the big one.
  EXPECT_EQ(State(small), v1::JOB_STATE_PENDING);
  ASSERT_TRUE(coordinator_->Cancel(big, "too big").ok());
  EXPECT_EQ(State(big), v1::JOB_STATE_CANCELLED);
  Pass(absl::Seconds(1), {"a"});  // the next pass
  EXPECT_EQ(State(small), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(a->Assigns(), SizeIs(1));
}

TEST_F(CoordinatorTest, FailedRankRestartsTheGangUntilRestartsRunOut) {
  auto a = Attach("a", 2);
  const std::string id = Submit(CpuSpec("flaky", 2, /*max_restarts=*/1));
  auto first = a->Assigns();
  Started("a", first);
  a->Clear();

  ASSERT_TRUE(Report("a", first[1], v1::TaskStatus::EXITED, 134).ok());
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(job.failure_message(), HasSubstr("rank 1 on worker a exited with code 134"));
  // The surviving rank is stopped; nothing is requeued until it is.
  ASSERT_THAT(a->Cancels(), SizeIs(1));
  EXPECT_EQ(a->Cancels()[0].rank(), 0);
  EXPECT_EQ(a->Cancels()[0].attempt(), 1);
  EXPECT_EQ(a->Cancels()[0].grace().seconds(), 7);
  EXPECT_THAT(a->Assigns(), IsEmpty());

  ASSERT_TRUE(Report("a", first[0], v1::TaskStatus::EXITED, 0, 15).ok());
  job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);  // requeued and placed again
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.restarts(), 1);
  auto second = a->Assigns();
  ASSERT_THAT(second, SizeIs(2));
  EXPECT_EQ(second[0].attempt(), 2);
  // A status of the old attempt changes nothing.
  ASSERT_TRUE(Report("a", first[0], v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);

  Started("a", second);
  ASSERT_TRUE(Report("a", second[0], v1::TaskStatus::EXITED, 0, 9).ok());
  job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.failure_message(), HasSubstr("killed by signal 9"));
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_TRUE(job.has_end_time());
}

TEST_F(CoordinatorTest, LostAgentFailsTheAttemptAndFreesItsDevices) {
  auto a = Attach("a", 1);
  auto b = Attach("b", 1);
  const std::string id = Submit(CpuSpec("pair", 2));
  const auto on_a = a->Assigns();
  Started("a", on_a);
  Started("b", b->Assigns());
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  a->Clear();

  Pass(absl::Seconds(12), {"a"});  // b stops heartbeating
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(job.failure_message(), HasSubstr("worker b lost"));
  ASSERT_THAT(a->Cancels(), SizeIs(1));
  EXPECT_EQ(coordinator_->Heartbeat("b").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->ListWorkers()[1].state(), v1::WORKER_STATE_LOST);

  ASSERT_TRUE(Report("a", on_a[0], v1::TaskStatus::EXITED, 0, 15).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_PENDING);  // one slot left: the gang waits
  EXPECT_EQ(Get(id).attempt(), 2);

  auto b2 = Attach("b", 1);  // b comes back with nothing running
  EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
  ASSERT_THAT(b2->Assigns(), SizeIs(1));
  EXPECT_EQ(b2->Assigns()[0].attempt(), 2);
}

TEST_F(CoordinatorTest, HungRankFailsTheAttempt) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("hang", 1));
  Started("a", a->Assigns());
  ASSERT_TRUE(Progress(id, 1, 0, 5).ok());
  Pass(absl::Seconds(50), {"a"});
  ASSERT_TRUE(Progress(id, 1, 0, 6).ok());  // advanced: the clock restarts
  Pass(absl::Seconds(50), {"a"});
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(Progress(id, 1, 0, 6).ok());  // alive but stuck: does not count
  Pass(absl::Seconds(12), {"a"});
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(job.failure_message(), HasSubstr("hung: step 6"));
  EXPECT_THAT(a->Cancels(), SizeIs(1));
}

// The end of a run (last checkpoint, exports, evaluation) does not advance
// the step; reports in the "finish" phase keep the rank alive, and a rank
// that stops reporting there is still caught.
TEST_F(CoordinatorTest, FinishPhaseReportsAreNotAHang) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("finishing", 1));
  Started("a", a->Assigns());
  ASSERT_TRUE(Progress(id, 1, 0, 6).ok());
  for (int i = 0; i < 3; ++i) {
    Pass(absl::Seconds(50), {"a"});
    ASSERT_TRUE(Progress(id, 1, 0, 6, "finish").ok());
  }
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  Pass(absl::Seconds(62), {"a"});
  EXPECT_EQ(State(id), v1::JOB_STATE_RESTARTING);
}

TEST_F(CoordinatorTest, RunningJobThatNeverReportsProgressIsHung) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("silent", 1));
  Started("a", a->Assigns());
  Pass(absl::Seconds(58), {"a"});
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  Pass(absl::Seconds(4), {"a"});
  EXPECT_THAT(Get(id).failure_message(), HasSubstr("no rank reported progress"));
}

TEST_F(CoordinatorTest, AssignmentNeverConfirmedFailsTheAttempt) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("unanswered", 1));
  ASSERT_THAT(a->Assigns(), SizeIs(1));
  Pass(absl::Seconds(12), {"a"});
  EXPECT_THAT(Get(id).failure_message(), HasSubstr("not reported by its agent"));
}

TEST_F(CoordinatorTest, CancelStopsEveryRank) {
  auto a = Attach("a", 2);
  const std::string running = Submit(CpuSpec("r", 2));
  const std::string pending = Submit(CpuSpec("p", 1));
  const auto assigns = a->Assigns();
  Started("a", assigns);
  a->Clear();

  auto cancelled = coordinator_->Cancel(running, "not needed", "alice");
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled->failure_message(), "cancelled by alice: not needed");
  ASSERT_THAT(a->Cancels(), SizeIs(2));
  EXPECT_EQ(State(pending), v1::JOB_STATE_PENDING);  // slots held until the ranks exit
  ASSERT_TRUE(Report("a", assigns[0], v1::TaskStatus::EXITED, 0, 15).ok());
  EXPECT_EQ(State(pending), v1::JOB_STATE_SCHEDULED);
  // Cancelling again answers the terminal job unchanged.
  auto again = coordinator_->Cancel(running, "twice");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->failure_message(), "cancelled by alice: not needed");
  EXPECT_EQ(coordinator_->Cancel("job-unknown", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, WatchDeliversSnapshotEventsAndProgressInOrder) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("w", 1));
  std::vector<v1::JobUpdate> updates;
  auto watch = coordinator_->Watch(id, [&](const v1::JobUpdate& u) { updates.push_back(u); });
  ASSERT_TRUE(watch.ok());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].snapshot().state(), v1::JOB_STATE_SCHEDULED);
  Started("a", a->Assigns());
  ASSERT_TRUE(Progress(id, 1, 0, 3).ok());
  ASSERT_TRUE(Report("a", a->Assigns()[0], v1::TaskStatus::EXITED, 0).ok());
  ASSERT_THAT(updates, SizeIs(4));
  EXPECT_EQ(updates[1].event().to_state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(updates[2].progress().step(), 3);
  EXPECT_EQ(updates[3].event().to_state(), v1::JOB_STATE_SUCCEEDED);
  coordinator_->Unwatch(*watch);
  Submit(CpuSpec("other", 1));
  EXPECT_THAT(updates, SizeIs(4));
  // A finished job: its final snapshot.
  std::vector<v1::JobUpdate> late;
  ASSERT_TRUE(coordinator_->Watch(id, [&](const v1::JobUpdate& u) { late.push_back(u); }).ok());
  ASSERT_THAT(late, SizeIs(1));
  EXPECT_EQ(late[0].snapshot().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(coordinator_->Watch("job-none", [](const v1::JobUpdate&) {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, ProgressFromAStaleAttemptOrRankIsRefused) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("p", 1));
  Started("a", a->Assigns());
  EXPECT_EQ(Progress(id, 2, 0, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Progress(id, 1, 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Progress("job-none", 1, 0, 1).code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, ConcurrentCallersSeeEverySubmissionOnce) {
  auto a = Attach("a", 4);
  std::atomic<int> submitted_events{0};
  ASSERT_TRUE(coordinator_
                  ->Watch("",
                          [&](const v1::JobUpdate& u) {
                            if (u.has_event() && u.event().to_state() == v1::JOB_STATE_PENDING) {
                              ++submitted_events;
                            }
                          })
                  .ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string request = "t" + std::to_string(t) + "-" + std::to_string(i);
        // Each submission is sent twice, as a client retry would.
        EXPECT_TRUE(coordinator_->Submit(CpuSpec("c", 1), request).ok());
        EXPECT_TRUE(coordinator_->Submit(CpuSpec("c", 1), request).ok());
        EXPECT_TRUE(coordinator_->Heartbeat("a").ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  auto page = coordinator_->List(ListJobsQuery{.page_size = 1000});
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->jobs, SizeIs(100));
  EXPECT_EQ(submitted_events.load(), 100);
  EXPECT_THAT(a->Assigns(), SizeIs(4));  // four slots, four placements
}

}  // namespace
}  // namespace clmae
