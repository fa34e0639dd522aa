#pragma once

// Ordered delivery of the coordinator's outbound messages (to agents) and
// job updates (to watchers), outside the coordinator's domain lock.
//
// The coordinator decides under its lock and enqueues here in decision
// order; after unlocking it calls Flush(), which delivers everything queued
// so far in that order. One flusher at a time, so an Assign and a later
// Cancel of the same task can never reach an agent swapped.
//
// Nothing is delivered before it is durable: an item waits for every job
// write the coordinator staged before it (CommitQueue) to commit, so an
// Assign never reaches an agent, nor an event a watcher, for a transition a
// crash could still undo.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "clmae/v1/coordinator.pb.h"
#include "clmae/v1/worker_control.pb.h"
#include "coordinator/commit_queue.h"

namespace clmae {

// The outbound half of one agent's Attach stream, implemented by the gRPC
// edge (and by tests). Send is called from whichever thread flushes, never
// concurrently, never with the coordinator's lock held. It must only queue
// (not block on the network) and must not call into the Coordinator: that
// would deadlock on the delivery lock.
class AgentSink {
 public:
  virtual ~AgentSink() = default;
  virtual void Send(const v1::CoordinatorMessage& message) = 0;
};

// Receives one watcher's updates; the same rules as AgentSink::Send.
using WatchCallback = std::function<void(const v1::JobUpdate&)>;

// One watcher; `active` turns false (under the delivery lock) on Unwatch so
// nothing is delivered after Unwatch returns.
struct Watcher {
  explicit Watcher(WatchCallback cb) : callback(std::move(cb)) {}
  WatchCallback callback;
  bool active = true;
};

// Thread-safe. `commits` must outlive it.
class Outbox {
 public:
  explicit Outbox(const CommitQueue* commits) : commits_(commits) {}

  // Queue an item behind every write staged so far. `event`, when set, is
  // copied into the update's `event` at delivery (its `seq` is only known
  // once committed).
  void ToAgent(std::shared_ptr<AgentSink> sink, v1::CoordinatorMessage message);
  void ToWatcher(std::shared_ptr<Watcher> watcher, v1::JobUpdate update,
                 std::shared_ptr<const v1::JobEvent> event = nullptr);

  // Delivers, in order, every queued item whose writes have committed (the
  // items behind a write still being committed wait for a later Flush).
  // Call without the domain lock.
  void Flush();

  // Stops deliveries to `watcher`; waits for a delivery in progress, so
  // after this returns its callback is not running and will not run. Must
  // not be called from inside a callback.
  void Deactivate(const std::shared_ptr<Watcher>& watcher);

 private:
  struct AgentItem {
    std::shared_ptr<AgentSink> sink;
    v1::CoordinatorMessage message;
  };
  struct WatchItem {
    std::shared_ptr<Watcher> watcher;
    v1::JobUpdate update;
    std::shared_ptr<const v1::JobEvent> event;
  };
  struct Item {
    int64_t after = 0;  // CommitQueue sequence number that must be durable first
    std::variant<AgentItem, WatchItem> what;
  };

  const CommitQueue* const commits_;
  absl::Mutex deliver_mu_;  // held while delivering; taken before queue_mu_
  absl::Mutex queue_mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(queue_mu_);
};

}  // namespace clmae
