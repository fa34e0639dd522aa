#include "coordinator/commit_queue.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/outbox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class CountingSink : public AgentSink {
 public:
  void Send(const v1::CoordinatorMessage& message) override { sent.push_back(message); }
  std::vector<v1::CoordinatorMessage> sent;
};

class CommitQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_commit_queue_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto store = JobStore::Open(JobStoreOptions{.path = dir_ + "/jobs.db"});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    commits_ = std::make_unique<CommitQueue>(store_.get());
  }
  void TearDown() override {
    commits_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A PENDING job, stored.
  v1::Job Submitted(const std::string& name) {
    v1::JobSpec spec;
    spec.set_name(name);
    absl::StatusOr<SubmitOutcome> outcome = store_->Submit(spec, "", absl::Now());
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    return outcome->job;
  }
  // `job` moved to `to`, as a staged transition with an event.
  static JobWrite Move(v1::Job& job, v1::JobState to) {
    JobWrite write;
    write.from = job.state();
    job.set_state(to);
    write.job = job;
    write.message = absl::StrCat("to ", v1::JobState_Name(to));
    write.time = absl::Now();
    write.event = std::make_shared<v1::JobEvent>();
    return write;
  }

  std::string dir_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<CommitQueue> commits_;
};

TEST_F(CommitQueueTest, StagedWritesReachTheStoreOnlyWhenAwaited) {
  v1::Job job = Submitted("a");
  const int64_t scheduled = commits_->Stage(Move(job, v1::JOB_STATE_SCHEDULED));
  JobWrite to_running = Move(job, v1::JOB_STATE_RUNNING);
  std::shared_ptr<v1::JobEvent> event = to_running.event;
  const int64_t running = commits_->Stage(std::move(to_running));
  EXPECT_EQ(scheduled, 1);
  EXPECT_EQ(running, 2);
  EXPECT_EQ(commits_->durable(), 0);
  EXPECT_EQ(store_->Get(job.id())->state(), v1::JOB_STATE_PENDING);

  // Waiting for the first commits both, in order, in one batch.
  ASSERT_TRUE(commits_->AwaitDurable(scheduled).ok());
  EXPECT_EQ(commits_->durable(), 2);
  EXPECT_EQ(store_->Get(job.id())->state(), v1::JOB_STATE_RUNNING);
  absl::StatusOr<std::vector<v1::JobEvent>> events = store_->Events(job.id());
  ASSERT_TRUE(events.ok());
  ASSERT_THAT(*events, SizeIs(3));  // submitted, scheduled, running
  EXPECT_EQ(event->seq(), events->back().seq());
}

TEST_F(CommitQueueTest, ConcurrentWaitersAllSeeTheirWritesDurable) {
  constexpr int kJobs = 16;
  std::vector<v1::Job> jobs;
  for (int i = 0; i < kJobs; ++i) jobs.push_back(Submitted(absl::StrCat("j", i)));
  std::vector<std::thread> threads;
  absl::Mutex stage_mu;  // stands for the coordinator's lock: staging in decision order
  for (int i = 0; i < kJobs; ++i) {
    threads.emplace_back([&, i] {
      int64_t seq;
      {
        absl::MutexLock lock(&stage_mu);
        seq = commits_->Stage(Move(jobs[i], v1::JOB_STATE_SCHEDULED));
      }
      EXPECT_TRUE(commits_->AwaitDurable(seq).ok());
      EXPECT_EQ(store_->Get(jobs[i].id())->state(), v1::JOB_STATE_SCHEDULED);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(commits_->durable(), kJobs);
}

TEST_F(CommitQueueTest, AFailedCommitIsFinalAndStoresNothingOfItsBatch) {
  v1::Job good = Submitted("good");
  v1::Job bad = Submitted("bad");
  commits_->Stage(Move(good, v1::JOB_STATE_SCHEDULED));
  // Claims to move it from RUNNING, but it is stored PENDING: refused.
  bad.set_state(v1::JOB_STATE_RUNNING);
  const int64_t seq = commits_->Stage(Move(bad, v1::JOB_STATE_SUCCEEDED));
  absl::Status status = commits_->AwaitDurable(seq);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("must restart"));
  EXPECT_EQ(store_->Get(good.id())->state(), v1::JOB_STATE_PENDING);  // all or nothing
  // Later writes are not committed either: memory is ahead of the store.
  const int64_t later = commits_->Stage(Move(good, v1::JOB_STATE_RUNNING));
  EXPECT_FALSE(commits_->AwaitDurable(later).ok());
  EXPECT_FALSE(commits_->failure().ok());
  EXPECT_EQ(store_->Get(good.id())->state(), v1::JOB_STATE_PENDING);
}

TEST_F(CommitQueueTest, OutboxHoldsMessagesUntilTheWritesBeforeThemAreDurable) {
  Outbox outbox(commits_.get());
  auto sink = std::make_shared<CountingSink>();
  v1::CoordinatorMessage before;
  before.mutable_registered();
  outbox.ToAgent(sink, before);  // depends on nothing
  v1::Job job = Submitted("a");
  const int64_t seq = commits_->Stage(Move(job, v1::JOB_STATE_SCHEDULED));
  v1::CoordinatorMessage assign;
  assign.mutable_assign()->mutable_task()->set_job_id(job.id());
  outbox.ToAgent(sink, assign);

  outbox.Flush();
  ASSERT_THAT(sink->sent, SizeIs(1));  // the Assign waits for SCHEDULED
  EXPECT_TRUE(sink->sent[0].has_registered());
  ASSERT_TRUE(commits_->AwaitDurable(seq).ok());
  outbox.Flush();
  ASSERT_THAT(sink->sent, SizeIs(2));
  EXPECT_EQ(sink->sent[1].assign().task().job_id(), job.id());
}

TEST_F(CommitQueueTest, WatchersGetTheEventWithItsCommittedSeq) {
  Outbox outbox(commits_.get());
  std::vector<v1::JobUpdate> updates;
  auto watcher = std::make_shared<Watcher>([&](const v1::JobUpdate& u) { updates.push_back(u); });
  v1::Job job = Submitted("a");
  JobWrite write = Move(job, v1::JOB_STATE_SCHEDULED);
  std::shared_ptr<const v1::JobEvent> event = write.event;
  const int64_t seq = commits_->Stage(std::move(write));
  v1::JobUpdate update;
  update.set_job_id(job.id());
  outbox.ToWatcher(watcher, update, event);
  outbox.Flush();
  EXPECT_TRUE(updates.empty());
  ASSERT_TRUE(commits_->AwaitDurable(seq).ok());
  outbox.Flush();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_GT(updates[0].event().seq(), 0);
  EXPECT_EQ(updates[0].event().seq(), store_->Events(job.id())->back().seq());
}

TEST_F(CommitQueueTest, TheCommitterCommitsWithoutAWaiterAndSharesCommits) {
  constexpr int kJobs = 8;
  std::vector<v1::Job> jobs;
  for (int i = 0; i < kJobs; ++i) jobs.push_back(Submitted(absl::StrCat("j", i)));
  // Staged before the committer starts: it commits them all as one batch.
  for (v1::Job& job : jobs) commits_->Stage(Move(job, v1::JOB_STATE_SCHEDULED));
  absl::Mutex mu;
  int64_t seen_durable = 0;
  int calls = 0;
  commits_->StartCommitter([&] {
    absl::MutexLock lock(&mu);
    seen_durable = commits_->durable();
    ++calls;
  });
  {
    absl::MutexLock lock(&mu);
    const auto called = [&] {
      mu.AssertReaderHeld();
      return calls > 0;
    };
    mu.Await(absl::Condition(&called));
    EXPECT_EQ(seen_durable, kJobs);  // the callback runs after the commit
  }
  EXPECT_EQ(commits_->batches(), 1);
  for (const v1::Job& job : jobs) {
    EXPECT_EQ(store_->Get(job.id())->state(), v1::JOB_STATE_SCHEDULED);
  }
  // Staged later, committed by the thread on stop without anyone waiting.
  const int64_t last = commits_->Stage(Move(jobs[0], v1::JOB_STATE_RUNNING));
  commits_->StopCommitter();
  EXPECT_EQ(commits_->durable(), last);
  EXPECT_EQ(store_->Get(jobs[0].id())->state(), v1::JOB_STATE_RUNNING);
}

}  // namespace
}  // namespace clmae
