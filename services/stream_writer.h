#pragma once

// Ordered, bounded writes on one server stream of gRPC's callback API, fed
// from any thread (the coordinator's outbox flushes from whichever thread
// made a decision).
//
// A callback reactor allows one write in flight and exactly one Finish, and
// is deleted in OnDone, which can run as soon as Finish was called and no
// operation is outstanding. StreamWriter keeps the rules: it starts a write
// only while not finished, and it calls Finish only while no write is in
// flight (deferring it to OnWriteDone otherwise). So, when every write and
// Finish of a reactor goes through its StreamWriter, the reactor pointer is
// never used after it may have been deleted, even though the StreamWriter
// (shared with a sink or a watch callback) outlives it.
//
// gRPC calls (StartWrite, Finish) are made after the internal lock is
// released; gRPC runs the reactions they lead to on its own threads.

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/status.h"

namespace clmae {

// `Reactor` has StartWrite(const Message*) and Finish(grpc::Status)
// (grpc::ServerWriteReactor or grpc::ServerBidiReactor). Thread-safe.
template <typename Reactor, typename Message>
class StreamWriter {
 public:
  // At most `max_queued` messages wait behind the one in flight; one more
  // finishes the stream with RESOURCE_EXHAUSTED and `overflow_message`.
  // While `held`, messages queue but nothing is written until Release().
  StreamWriter(Reactor* reactor, size_t max_queued, std::string overflow_message, bool held)
      : reactor_(reactor),
        max_queued_(max_queued),
        overflow_message_(std::move(overflow_message)),
        held_(held) {}

  // Queues `message` behind the others. A non-empty `coalesce_key` replaces a
  // queued (not yet written) message with the same key instead, so only the
  // newest of, e.g., a job's progress updates waits. Returns false when the
  // message was dropped because the stream is finishing.
  bool Push(Message message, const std::string& coalesce_key = "") {
    Step step;
    bool accepted = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_.has_value()) return false;
      bool replaced = false;
      if (!coalesce_key.empty()) {
        for (auto it = queue_.rbegin(); it != queue_.rend(); ++it) {
          if (it->first == coalesce_key) {
            it->second = std::move(message);
            replaced = accepted = true;
            break;
          }
        }
      }
      if (!replaced) {
        if (queue_.size() >= max_queued_) {
          FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, overflow_message_),
                       /*drop_queued=*/true);
        } else {
          queue_.emplace_back(coalesce_key, std::move(message));
          accepted = true;
        }
      }
      step = NextLocked();
    }
    Run(step);
    return accepted;
  }

  // Finishes with `status` once everything queued so far is written.
  void FinishAfterQueued(grpc::Status status) { Finish(std::move(status), false); }

  // Finishes with `status` as soon as no write is in flight; drops the queue.
  void FinishNow(grpc::Status status) { Finish(std::move(status), true); }

  // Call from the reactor's OnWriteDone. A failed write means the stream is
  // gone: the queue is dropped and the stream finished (CANCELLED unless a
  // status was already chosen).
  void OnWriteDone(bool ok) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"),
                     /*drop_queued=*/true);
      }
      step = NextLocked();
    }
    Run(step);
  }

  // Ends the hold given at construction; writes what was queued meanwhile.
  void Release() {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      held_ = false;
      step = NextLocked();
    }
    Run(step);
  }

  // True once a finish was asked for (it may still wait for a write).
  bool finishing() {
    absl::MutexLock lock(&mu_);
    return finish_.has_value();
  }

 private:
  struct Step {
    const Message* write = nullptr;
    std::optional<grpc::Status> finish;
  };

  void Finish(grpc::Status status, bool drop_queued) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      FinishLocked(std::move(status), drop_queued);
      step = NextLocked();
    }
    Run(step);
  }

  // The first status asked for wins; dropping the queue is sticky.
  void FinishLocked(grpc::Status status, bool drop_queued) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_.has_value()) finish_ = std::move(status);
    if (drop_queued) queue_.clear();
  }

  // What to do next; at most one gRPC call.
  Step NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    if (finished_ || writing_ || held_) return step;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front().second);
      queue_.pop_front();
      writing_ = true;
      step.write = &current_;
    } else if (finish_.has_value()) {
      finished_ = true;
      step.finish = *finish_;
    }
    return step;
  }

  void Run(const Step& step) {
    if (step.write != nullptr) {
      reactor_->StartWrite(step.write);
    } else if (step.finish.has_value()) {
      reactor_->Finish(*step.finish);
    }
  }

  Reactor* const reactor_;
  const size_t max_queued_;
  const std::string overflow_message_;

  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, Message>> queue_ ABSL_GUARDED_BY(mu_);
  // The message in flight; gRPC reads it until OnWriteDone. Written only
  // when no write is in flight.
  Message current_;
};

}  // namespace clmae
