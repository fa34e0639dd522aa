#pragma once

// What the agent runs and which task statuses the coordinator has yet to
// hear, kept across Attach streams: the running set goes into each
// `register`, and exits that happened while disconnected (or that were
// written just before a stream broke) follow it.

#include <deque>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker.pb.h"
#include "clmae/v1/worker_control.pb.h"

namespace clmae {

// One rank of one attempt: (job id, attempt, rank).
using TaskId = std::tuple<std::string, int, int>;

TaskId IdOf(const v1::Task& task);
// "job <id> attempt <n> rank <r>", for log lines.
std::string TaskName(const TaskId& id);

// Thread-safe. The supervisor reports starts and exits; one stream writer at
// a time drains the statuses (Attach ... Detach).
class TaskLedger {
 public:
  // An exit written to a stream that broke less than `resend_window` later
  // is sent again on the next stream (a write that succeeded may still have
  // been lost with the connection; the coordinator ignores a repeat). Use
  // the coordinator's lease.
  explicit TaskLedger(absl::Duration resend_window) : resend_window_(resend_window) {}

  // A trainer started: it is running, and a RUNNING status is queued when a
  // stream is attached (otherwise the next `register` lists it).
  void Started(const v1::Task& task);
  // A trainer ended (or could not start): it is no longer running and an
  // EXITED status is queued until written.
  void Exited(const v1::TaskStatus& status);
  std::vector<v1::Task> Running() const;
  size_t RunningCount() const;

  void set_resend_window(absl::Duration window);

  // --- The stream writer --------------------------------------------------

  // A stream is about to send `register`: returns the tasks to list in it.
  // Queued RUNNING statuses are dropped (the list covers them); queued exits
  // stay, to be sent right after `register`.
  std::vector<v1::Task> Attach();
  // The next status to write, waiting until one is queued, `deadline`
  // passes, or Interrupt(); it stays queued until Written().
  std::optional<v1::TaskStatus> Peek(absl::Time deadline);
  // The status Peek() returned was written at `now`.
  void Written(absl::Time now);
  // Makes Peek() return nullopt until the next Attach().
  void Interrupt();
  // The stream ended at `now`: exits written within the resend window
  // before it are queued again, ahead of the others.
  void Detach(absl::Time now);
  // Waits until nothing is queued or `deadline` passes; returns whether the
  // queue is empty.
  bool WaitDrained(absl::Time deadline);

 private:
  struct Sent {
    v1::TaskStatus status;
    absl::Time at;
  };

  mutable absl::Mutex mu_;
  absl::Duration resend_window_ ABSL_GUARDED_BY(mu_);
  std::map<TaskId, v1::Task> running_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::TaskStatus> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Sent> sent_ ABSL_GUARDED_BY(mu_);  // exits written on this stream
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace clmae
