#pragma once

// Threads for the handlers that wait for a durable commit.
//
// gRPC's callback API runs a unary handler inline on one of its callback
// threads, of which it keeps about one per core. A SubmitJob handler waits
// there for its INSERT to commit, so on a small host only one or two
// submissions were ever waiting for the same commit, whatever the number of
// clients (docs/benchmarks.md, issue 16). Running those handlers here lets
// as many wait at once as this pool has threads, and they share one commit
// (the job store's group commit); the callback threads stay free for the
// agents' streams.

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace clmae {

// Thread-safe.
class BlockingCallPool {
 public:
  // Starts `threads` threads (at least 1).
  explicit BlockingCallPool(int threads);
  // Runs every task already scheduled, then joins the threads.
  ~BlockingCallPool();

  BlockingCallPool(const BlockingCallPool&) = delete;
  BlockingCallPool& operator=(const BlockingCallPool&) = delete;

  // Runs `task` on one of the threads, in scheduling order of start. A task
  // may block (that is the point); it must not throw.
  void Schedule(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace clmae
