// The coordinator's commits: writes of callers that do not wait share a
// commit, and nothing is answered or sent before what it shows is durable.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator_fixture.h"
#include "gmock/gmock.h"

namespace clmae {
namespace {

using ::testing::Each;
using ::testing::SizeIs;

// Every commit takes this long, so that writes staged meanwhile are seen
// sharing the next one.
constexpr absl::Duration kSlowCommit = absl::Milliseconds(100);

class CoordinatorCommitTest : public CoordinatorFixture {
 protected:
  CoordinatorOptions Options() override {
    CoordinatorOptions options = CoordinatorFixture::Options();
    options.store_extra_commit_latency = kSlowCommit;
    options.master_port_max = 29600;  // a port per job
    return options;
  }
  // A second connection to the store: what is durable, seen from outside.
  std::unique_ptr<JobStore> Reader() {
    auto store = JobStore::Open(JobStoreOptions{.path = dir_ + "/coordinator.db"});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
};

// Records, for every Assign it is sent, the job's state in the store at that
// moment (through its own connection).
class CheckingSink : public AgentSink {
 public:
  explicit CheckingSink(std::unique_ptr<JobStore> store) : store_(std::move(store)) {}
  void Send(const v1::CoordinatorMessage& message) override {
    if (!message.has_assign()) return;
    absl::StatusOr<v1::Job> stored = store_->Get(message.assign().task().job_id());
    absl::MutexLock lock(&mu_);
    states_.push_back(stored.ok() ? stored->state() : v1::JOB_STATE_UNSPECIFIED);
  }
  std::vector<v1::JobState> States() {
    absl::MutexLock lock(&mu_);
    return states_;
  }

 private:
  std::unique_ptr<JobStore> store_;
  absl::Mutex mu_;
  std::vector<v1::JobState> states_;
};

TEST_F(CoordinatorCommitTest, AgentReportsDoNotWaitAndShareCommits) {
  auto sink = Attach("w", 16);
  constexpr int kJobs = 16;
  for (int i = 0; i < kJobs; ++i) Submit(CpuSpec(absl::StrCat("j", i), 1));
  const std::vector<v1::TaskAssignment> assigns = sink->Assigns();
  ASSERT_THAT(assigns, SizeIs(kJobs));

  const int64_t writes_before = coordinator_->StagedWrites();
  const int64_t batches_before = coordinator_->CommittedBatches();
  // Each report stages RUNNING and returns without waiting for its commit,
  // so the ones that follow within one commit's time share the next.
  for (const v1::TaskAssignment& a : assigns) {
    v1::TaskStatus running;
    running.set_job_id(a.job_id());
    running.set_attempt(a.attempt());
    running.set_rank(a.rank());
    running.set_state(v1::TaskStatus::RUNNING);
    ASSERT_TRUE(coordinator_->TaskStatus("w", running).ok());
  }
  Settle();
  const int64_t writes = coordinator_->StagedWrites() - writes_before;
  const int64_t batches = coordinator_->CommittedBatches() - batches_before;
  EXPECT_EQ(writes, kJobs);  // one RUNNING each
  EXPECT_LT(batches, writes);
  for (const v1::TaskAssignment& a : assigns) EXPECT_EQ(State(a.job_id()), v1::JOB_STATE_RUNNING);
}

TEST_F(CoordinatorCommitTest, ASubmissionIsAnsweredDurableAndItsAssignFollowsItsPlacement) {
  std::unique_ptr<JobStore> reader = Reader();
  auto sink = std::make_shared<CheckingSink>(Reader());
  v1::Register reg;
  reg.set_worker_id("w");
  reg.set_address("w.cluster");
  reg.set_cpu_slots(4);
  ASSERT_TRUE(coordinator_->AgentAttached(reg, sink).ok());

  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::Job> job = coordinator_->Submit(CpuSpec(absl::StrCat("j", i), 1), "");
    ASSERT_TRUE(job.ok()) << job.status();
    // What the answer shows is already stored.
    EXPECT_EQ(job->state(), v1::JOB_STATE_PENDING);
    absl::StatusOr<v1::Job> stored = reader->Get(job->id());
    ASSERT_TRUE(stored.ok()) << stored.status();
    ids.push_back(job->id());
  }
  Settle();
  // Every Assign reached the agent only once its job's SCHEDULED was stored.
  EXPECT_THAT(sink->States(), SizeIs(4));
  EXPECT_THAT(sink->States(), Each(v1::JOB_STATE_SCHEDULED));
  for (const std::string& id : ids) EXPECT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
}

TEST_F(CoordinatorCommitTest, ConcurrentSubmissionsAreAllPlacedOnceDurable) {
  auto sink = std::make_shared<CheckingSink>(Reader());
  v1::Register reg;
  reg.set_worker_id("w");
  reg.set_address("w.cluster");
  reg.set_cpu_slots(32);
  ASSERT_TRUE(coordinator_->AgentAttached(reg, sink).ok());
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(coordinator_->Submit(CpuSpec(absl::StrCat("c", c, "-", i), 1), "").ok());
      }
    });
  }
  for (std::thread& t : clients) t.join();
  Settle();
  EXPECT_THAT(sink->States(), SizeIs(32));
  EXPECT_THAT(sink->States(), Each(v1::JOB_STATE_SCHEDULED));
}

TEST_F(CoordinatorCommitTest, WritesDecidedBeforeShutdownAreCommitted) {
  auto sink = Attach("w", 2);
  const std::string id = Submit(CpuSpec("j", 1));
  ASSERT_THAT(sink->Assigns(), SizeIs(1));
  v1::TaskStatus running;
  running.set_job_id(id);
  running.set_attempt(1);
  running.set_rank(0);
  running.set_state(v1::TaskStatus::RUNNING);
  ASSERT_TRUE(coordinator_->TaskStatus("w", running).ok());
  coordinator_.reset();  // not settled: the committer commits RUNNING first
  EXPECT_EQ(Reader()->Get(id)->state(), v1::JOB_STATE_RUNNING);
  Reopen();
}

}  // namespace
}  // namespace clmae
