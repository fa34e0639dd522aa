#pragma once

// The coordinator's job writes, committed in batches and in decision order.
//
// The coordinator decides under its domain lock and stages each write here
// (Stage); nothing it decided is acted on yet. After releasing the lock, the
// caller waits until its writes are durable (AwaitDurable) and only then
// answers its caller and lets the outbox deliver what waited for them. The
// first waiter to find no commit in progress commits every write staged so
// far as one JobStore::Apply (one transaction, one fsync, shared with
// concurrent submissions); the others wait for it. So a burst of placements
// and task reports costs one fsync, not one each, and the domain lock is
// never held across a commit.
//
// With a committer thread (StartCommitter) a caller need not wait at all:
// the thread commits whatever is staged as soon as the previous commit ends,
// and after each commit runs a callback (the coordinator flushes its outbox
// there), so the Assigns and Cancels a write released go out without any
// caller waiting for them. Writes staged while one commit runs share the
// next one. Callers that answer someone still call AwaitDurable first.
//
// A failed commit is final: what the coordinator holds in memory is then
// ahead of the store, so every later AwaitDurable answers the same error
// and nothing that depends on the lost writes is delivered. The process
// must restart and reload the store (docs/reliability.md).

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"

namespace clmae {

// Thread-safe. `store` must outlive it.
class CommitQueue {
 public:
  explicit CommitQueue(JobStore* store) : store_(store) {}
  // Stops the committer thread, if started, after it committed every write
  // staged before (StopCommitter).
  ~CommitQueue();

  // Starts a thread that commits every staged write as soon as no commit is
  // running, then calls `after_commit` (without any lock of this queue held;
  // on that thread only). At most once. Without it, writes are committed only
  // by callers of AwaitDurable.
  void StartCommitter(std::function<void()> after_commit) ABSL_LOCKS_EXCLUDED(mu_);
  // Commits what is staged and joins the thread; then `after_commit` is not
  // called again. Idempotent; a no-op without a committer.
  void StopCommitter() ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `write` after every write staged before it and returns its
  // sequence number (1, 2, ...). Callers stage in decision order: under the
  // lock that orders their decisions.
  int64_t Stage(JobWrite write) ABSL_LOCKS_EXCLUDED(mu_);

  // The sequence number of the last write staged (0: none yet).
  int64_t staged() const ABSL_LOCKS_EXCLUDED(mu_);
  // Every write up to this sequence number has committed.
  int64_t durable() const ABSL_LOCKS_EXCLUDED(mu_);

  // Returns once every write up to `seq` has committed, committing the
  // staged writes itself when no commit is in progress. Must not be called
  // while holding a lock that a committer could need (the store's own are
  // fine). The error of a failed commit, then and on every later call.
  absl::Status AwaitDurable(int64_t seq) ABSL_LOCKS_EXCLUDED(mu_);

  // OK, or the error of the commit that failed.
  absl::Status failure() const ABSL_LOCKS_EXCLUDED(mu_);

  // How many batches were committed (successfully) so far: with
  // staged() it shows how many writes shared a commit.
  int64_t batches() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Commits everything staged as one batch; mu_ is released during the
  // commit. Requires !committing_.
  void CommitStaged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitterLoop() ABSL_LOCKS_EXCLUDED(mu_);

  JobStore* const store_;
  mutable absl::Mutex mu_;
  std::vector<JobWrite> queue_ ABSL_GUARDED_BY(mu_);  // staged, not yet taken by a committer
  int64_t staged_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t durable_ ABSL_GUARDED_BY(mu_) = 0;
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> after_commit_;  // set before the thread starts
  std::thread committer_;
};

}  // namespace clmae
