// What a chaos run against the service found, as regression tests of the
// domain: restarts back off, rendezvous ports change between attempts and a
// busy one is a node problem, a coordinator restart gives agents time to
// re-attach, a late rank's success is kept, drains outlast restarts, and
// failures name the rank and node that failed.

#include <algorithm>
#include <csignal>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/exit_codes.h"
#include "coordinator/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace clmae {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

class CoordinatorResilienceTest : public CoordinatorFixture {
 protected:
  CoordinatorOptions Options() override {
    CoordinatorOptions options = CoordinatorFixture::Options();
    options.restart_backoff_min = backoff_min_;
    options.restart_backoff_max = std::max(absl::Seconds(40), backoff_min_);
    options.recovery_grace = recovery_grace_;
    return options;
  }
  // Places `id`, starts its ranks and returns their assignments.
  std::vector<v1::TaskAssignment> Running(const std::shared_ptr<RecordingSink>& sink,
                                          const std::string& worker) {
    std::vector<v1::TaskAssignment> tasks = sink->Assigns();
    sink->Clear();
    Started(worker, tasks);
    return tasks;
  }

  absl::Duration backoff_min_ = absl::ZeroDuration();
  absl::Duration recovery_grace_ = absl::ZeroDuration();
};

TEST_F(CoordinatorResilienceTest, RestartsBackOffExponentiallyUpToTheCap) {
  backoff_min_ = absl::Seconds(10);
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("crashes", 1, /*max_restarts=*/5));
  for (int restart = 1; restart <= 4; ++restart) {
    std::vector<v1::TaskAssignment> tasks = Running(a, "a");
    ASSERT_EQ(tasks.size(), 1u) << "restart " << restart;
    ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, 1).ok());
    const v1::Job job = Get(id);
    ASSERT_EQ(job.state(), v1::JOB_STATE_PENDING);
    ASSERT_EQ(job.restarts(), restart);
    // 10 s, 20 s, 40 s, then the 40 s cap.
    const absl::Duration wait = absl::Seconds(restart == 1 ? 10 : restart == 2 ? 20 : 40);
    EXPECT_EQ(FromProtoTime(job.not_before()), now_ + wait) << "restart " << restart;
    Pass(wait - absl::Seconds(1), {"a"});
    EXPECT_EQ(State(id), v1::JOB_STATE_PENDING) << "placed before its back-off ran out";
    EXPECT_TRUE(a->Assigns().empty());
    Pass(absl::Seconds(2), {"a"});
    EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED) << "restart " << restart;
  }
}

TEST_F(CoordinatorResilienceTest, AJobBackingOffDoesNotHoldUpTheQueueBehindIt) {
  backoff_min_ = absl::Minutes(1);
  Reopen();
  auto a = Attach("a", 1);
  const std::string first = Submit(CpuSpec("crashes", 1, 3, /*priority=*/10));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  const std::string second = Submit(CpuSpec("waits", 1));
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, 1).ok());
  EXPECT_EQ(State(first), v1::JOB_STATE_PENDING);
  EXPECT_EQ(State(second), v1::JOB_STATE_SCHEDULED);
}

TEST_F(CoordinatorResilienceTest, PreemptionsDoNotBackOff) {
  backoff_min_ = absl::Minutes(1);
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("evicted", 1));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, kTrainerExitStopped).ok());
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_FALSE(job.has_not_before());
}

TEST_F(CoordinatorResilienceTest, EveryAttemptGetsAnotherRendezvousPort) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("flaky", 1, /*max_restarts=*/3));
  std::set<int> ports;
  for (int attempt = 1; attempt <= 4; ++attempt) {
    std::vector<v1::TaskAssignment> tasks = Running(a, "a");
    ASSERT_EQ(tasks.size(), 1u);
    EXPECT_GE(tasks[0].master_port(), 29500);
    EXPECT_LE(tasks[0].master_port(), 29510);
    EXPECT_FALSE(ports.contains(tasks[0].master_port()))
        << "attempt " << attempt << " got port " << tasks[0].master_port() << " again";
    ports.insert(tasks[0].master_port());
    ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, 1).ok());
  }
  EXPECT_EQ(State(id), v1::JOB_STATE_FAILED);
}

TEST_F(CoordinatorResilienceTest, ABusyRendezvousPortRequeuesWithoutARestartAndIsNotReused) {
  auto a = Attach("a", 2);
  const std::string id = Submit(CpuSpec("unlucky", 2, /*max_restarts=*/0));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  ASSERT_EQ(tasks.size(), 2u);
  const int busy = tasks[0].master_port();
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, kTaskExitRendezvousBusy, 0,
                     "rendezvous port in use on worker a")
                  .ok());
  ASSERT_TRUE(Report("a", tasks[1], v1::TaskStatus::EXITED, 0, SIGTERM).ok());

  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED) << job.failure_message();
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_EQ(job.node_requeues(), 1);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_NE(job.placement().master_port(), busy);
  // Another job on the node does not get the held port either.
  const std::string other = Submit(CpuSpec("other", 1));
  (void)other;
  for (const v1::TaskAssignment& t : a->Assigns()) EXPECT_NE(t.master_port(), busy);
}

TEST_F(CoordinatorResilienceTest, ACorruptResumeCheckpointRequeuesWithoutARestart) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("resumes", 1, /*max_restarts=*/0));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, kTaskExitCheckpointCorrupt).ok());
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_EQ(job.node_requeues(), 1);
}

TEST_F(CoordinatorResilienceTest, APathTheNodeRefusesFailsTheJobWithoutARestart) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("reads-etc", 1, /*max_restarts=*/3));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, kTaskExitPathRefused, 0,
                     "data.path: '/etc' is outside the folders this worker lets jobs read")
                  .ok());
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_THAT(job.failure_message(), HasSubstr("data.path: '/etc' is outside"));
}

TEST_F(CoordinatorResilienceTest, AfterARestartAgentsHaveTheRecoveryGraceToReattach) {
  recovery_grace_ = absl::Seconds(40);  // the lease is 10 s
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("long", 1));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  ASSERT_EQ(State(id), v1::JOB_STATE_RUNNING);

  Reopen();  // a crash: the new coordinator knows only the store
  // The agent backs off for 30 s before it reconnects: past the lease, within
  // the grace.
  Pass(absl::Seconds(30), {});
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  a = Attach("a", 1, {AsTask(tasks[0])});
  Pass(absl::Seconds(30), {"a"});
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(a->Cancels().empty());
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, 0).ok());
  EXPECT_EQ(State(id), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoordinatorResilienceTest, AnAgentAbsentPastTheGraceStillLosesItsRanks) {
  recovery_grace_ = absl::Seconds(20);
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("long", 1, /*max_restarts=*/0));
  Running(a, "a");
  Reopen();
  Pass(absl::Seconds(22), {});
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.failure_message(), HasSubstr("rank 0 on worker a"));
}

TEST_F(CoordinatorResilienceTest, ARankThatFinishesAfterItsAttemptFailedForLatenessSucceeds) {
  recovery_grace_ = absl::Seconds(10);  // as short as the lease
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("late", 1));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  Reopen();
  // The agent re-attaches after the grace: its rank counts as lost, and
  // attempt 2 waits for a device.
  Pass(absl::Seconds(12), {});
  ASSERT_EQ(State(id), v1::JOB_STATE_PENDING);
  ASSERT_EQ(Get(id).attempt(), 2);
  a = Attach("a", 1, {AsTask(tasks[0])});
  EXPECT_TRUE(a->Cancels().empty()) << "a late rank was stopped while nothing newer ran";
  EXPECT_TRUE(a->Assigns().empty()) << "attempt 2 took the late rank's device";
  // Attempt 1's rank reports its result and exits 0: the job succeeded.
  v1::ReportProgressRequest result;
  result.set_job_id(id);
  result.set_attempt(1);
  result.set_rank(0);
  result.mutable_progress()->set_step(96);
  (*result.mutable_result()->mutable_metrics())["knn_top1"] = 0.7;
  EXPECT_TRUE(coordinator_->ReportProgress(result).ok());
  ASSERT_TRUE(Report("a", tasks[0], v1::TaskStatus::EXITED, 0).ok());
  const v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.result().metrics().at("knn_top1"), 0.7);
}

TEST_F(CoordinatorResilienceTest, ANewerAttemptStopsTheLateRanks) {
  recovery_grace_ = absl::Seconds(10);
  Reopen();
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("late", 1));
  std::vector<v1::TaskAssignment> tasks = Running(a, "a");
  Reopen();
  Pass(absl::Seconds(12), {});
  auto b = Attach("b", 1);  // attempt 2 starts there
  ASSERT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
  a = Attach("a", 1, {AsTask(tasks[0])});
  ASSERT_EQ(a->Cancels().size(), 1u);
  EXPECT_EQ(a->Cancels()[0].attempt(), 1);
}

TEST_F(CoordinatorResilienceTest, DrainsOutlastACoordinatorRestart) {
  auto a = Attach("a", 1);
  Attach("b", 1);
  ASSERT_TRUE(coordinator_->SetWorkerDraining("a", true, /*move_jobs=*/false).ok());
  Reopen();
  a = Attach("a", 1);
  auto b = Attach("b", 1);
  std::vector<v1::Worker> workers = coordinator_->ListWorkers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].id(), "a");
  EXPECT_EQ(workers[0].state(), v1::WORKER_STATE_DRAINING);
  // Jobs go to b only; a second one waits rather than land on a.
  Submit(CpuSpec("one", 1));
  Submit(CpuSpec("two", 1));
  EXPECT_TRUE(a->Assigns().empty());
  EXPECT_EQ(b->Assigns().size(), 1u);
  // Undraining is durable too.
  ASSERT_TRUE(coordinator_->SetWorkerDraining("a", false).ok());
  Reopen();
  Attach("a", 1);
  EXPECT_EQ(coordinator_->ListWorkers()[0].state(), v1::WORKER_STATE_READY);
}

TEST_F(CoordinatorResilienceTest, AHangNamesTheSilentRankNotTheOnesWaitingForIt) {
  auto a = Attach("a", 1);
  auto b = Attach("b", 1);
  const std::string id = Submit(CpuSpec("stuck", 2, /*max_restarts=*/0));
  Started("a", a->Assigns());
  Started("b", b->Assigns());
  ASSERT_TRUE(Progress(id, 1, 0, 10).ok());
  ASSERT_TRUE(Progress(id, 1, 1, 10).ok());
  // Rank 1 (on b) is stopped: silent. Rank 0 (on a) waits in a collective
  // and keeps reporting step 10.
  for (int i = 0; i < 40; ++i) {
    Pass(absl::Seconds(2), {"a", "b"});
    if (State(id) != v1::JOB_STATE_RUNNING) break;
    ASSERT_TRUE(Progress(id, 1, 0, 10).ok());
  }
  const v1::Job job = Get(id);
  ASSERT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.failure_message(), HasSubstr("rank 1 on worker b is hung"));
}

TEST_F(CoordinatorResilienceTest, APeerFailingAfterAWorkerDisconnectedNamesTheWorker) {
  auto a = Attach("a", 1);
  auto b = Attach("b", 1);
  const std::string id = Submit(CpuSpec("split", 2, /*max_restarts=*/0));
  std::vector<v1::TaskAssignment> on_a = a->Assigns();
  std::vector<v1::TaskAssignment> on_b = b->Assigns();
  Started("a", on_a);
  Started("b", on_b);
  // Agent a is killed: its stream closes, and rank 1's collective fails.
  coordinator_->AgentDetached("a", a.get());
  ASSERT_TRUE(Report("b", on_b[0], v1::TaskStatus::EXITED, 1).ok());
  const v1::Job job = Get(id);
  EXPECT_THAT(job.failure_message(), AllOf(HasSubstr("worker a (rank 0) disconnected"),
                                           HasSubstr("rank 1 on worker b exited with code 1")));
}

TEST_F(CoordinatorResilienceTest, TransitionsAndLostWorkersAreLogged) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("logged", 1, /*max_restarts=*/0));
  Running(a, "a");
  Pass(absl::Seconds(12), {});
  const std::vector<std::string> lines = Logged();
  EXPECT_THAT(lines, Contains(HasSubstr("worker a attached")));
  EXPECT_THAT(lines, Contains(AllOf(HasSubstr("job " + id + " attempt 1: PENDING -> SCHEDULED"),
                                    HasSubstr("placed on a"))));
  EXPECT_THAT(lines, Contains(HasSubstr("worker a lost: no heartbeat within the lease")));
  EXPECT_THAT(lines, Contains(AllOf(HasSubstr("RUNNING -> FAILED"), HasSubstr("worker a lost"))));
  EXPECT_THAT(lines, Not(Contains(HasSubstr("\n"))));
}

TEST_F(CoordinatorResilienceTest, AnUnknownHugeIdIsEchoedClipped) {
  const std::string id(10000, 'x');
  absl::StatusOr<v1::Job> job = coordinator_->Get(id);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_LT(job.status().message().size(), 300u);
  EXPECT_THAT(job.status().message(), HasSubstr("(10000 characters)"));
}

}  // namespace
}  // namespace clmae
