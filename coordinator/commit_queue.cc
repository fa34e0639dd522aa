#include "coordinator/commit_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace clmae {

int64_t CommitQueue::Stage(JobWrite write) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(write));
  return ++staged_;
}

int64_t CommitQueue::staged() const {
  absl::MutexLock lock(&mu_);
  return staged_;
}

int64_t CommitQueue::durable() const {
  absl::MutexLock lock(&mu_);
  return durable_;
}

absl::Status CommitQueue::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

int64_t CommitQueue::batches() const {
  absl::MutexLock lock(&mu_);
  return batches_;
}

CommitQueue::~CommitQueue() { StopCommitter(); }

void CommitQueue::StartCommitter(std::function<void()> after_commit) {
  after_commit_ = std::move(after_commit);
  committer_ = std::thread([this] { CommitterLoop(); });
}

void CommitQueue::StopCommitter() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !committer_.joinable()) return;
    stopping_ = true;
  }
  committer_.join();
}

void CommitQueue::CommitterLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      const auto work = [&] {
        mu_.AssertReaderHeld();
        return (!queue_.empty() && !committing_) || stopping_ || !failure_.ok();
      };
      mu_.Await(absl::Condition(&work));
      // A failed commit is final: nothing later is committed.
      if (!failure_.ok()) return;
      if (!queue_.empty() && !committing_) {
        CommitStaged();
      } else if (stopping_) {
        // Wait out a caller's commit, then commit what remains.
        const auto idle = [&] {
          mu_.AssertReaderHeld();
          return !committing_;
        };
        mu_.Await(absl::Condition(&idle));
        if (queue_.empty() || !failure_.ok()) return;
        CommitStaged();
      }
    }
    if (after_commit_) after_commit_();
  }
}

void CommitQueue::CommitStaged() {
  // Everything staged so far, in order. Writes staged while this commit
  // runs go in the next batch.
  committing_ = true;
  std::vector<JobWrite> batch;
  batch.swap(queue_);
  const int64_t upto = staged_;
  mu_.Unlock();
  absl::Status applied = store_->Apply(batch);
  mu_.Lock();
  committing_ = false;
  if (applied.ok()) {
    durable_ = upto;
    ++batches_;
  } else {
    failure_ = absl::Status(applied.code(),
                            absl::StrCat("a batch of ", batch.size(),
                                         " job writes failed to commit; the coordinator must "
                                         "restart to reload its store: ",
                                         applied.message()));
  }
}

absl::Status CommitQueue::AwaitDurable(int64_t seq) {
  absl::MutexLock lock(&mu_);
  seq = std::min(seq, staged_);  // nothing later to wait for
  for (;;) {
    if (!failure_.ok()) return failure_;
    if (durable_ >= seq) return absl::OkStatus();
    if (committing_) {
      // Another caller (or the committer) commits; its batch may hold
      // `seq`, or the next one will.
      const auto moved = [&] {
        mu_.AssertReaderHeld();
        return !committing_ || durable_ >= seq || !failure_.ok();
      };
      mu_.Await(absl::Condition(&moved));
      continue;
    }
    // Lead: commit everything staged so far.
    CommitStaged();
  }
}

}  // namespace clmae
