#pragma once

// Rank 0's files to the coordinator's checkpoint store
// (WorkerControl.UploadCheckpoint): every full checkpoint, the safetensors
// exports and the previews, in the order they were written, from a
// background thread. The training thread only queues a file; a slow,
// unreachable or full coordinator never holds up or fails training, and no
// file holds up the ones behind it: a file the coordinator refuses is
// dropped, one that failed for a passing reason waits behind the others.
// The trainer keeps a checkpoint on disk until the coordinator has
// confirmed it (MayDeleteCheckpoint).

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "services/checkpoint_upload.h"
#include "services/grpc_client.h"
#include "worker/engine/train/trainer.h"

namespace clmae {

struct CheckpointUploaderOptions {
  ClientOptions client;  // coordinator address, worker token, TLS files
  std::string job_id;
  int attempt = 1;
  // A file whose upload failed for a passing reason (UNAVAILABLE,
  // DEADLINE_EXCEEDED, INTERNAL, ABORTED, UNKNOWN) is deferred: it goes
  // behind the other queued files and is tried again after a delay of its
  // own that doubles from initial_backoff up to max_backoff, each drawn from
  // [delay/2, delay].
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(60);
  UploadOptions upload;  // chunk size and the deadline of one upload
  // The node agent's checkpoint cache (CLMAE_CHECKPOINT_CACHE): a confirmed
  // full checkpoint is hard-linked there as <cache_dir>/<sha256>, so that a
  // restart on this node resumes without fetching it. Empty: none.
  std::string cache_dir;
};

// The TrainObserver callbacks are for the training thread and return at
// once; Flush() and the accessors may be called from any thread. Use on
// rank 0 only (the only rank that writes files).
class CheckpointUploader : public TrainObserver {
 public:
  // INVALID_ARGUMENT for an empty job id, attempt < 1, or a backoff with
  // initial <= 0 or max < initial; channel errors as MakeClientChannel's.
  // Starts the upload thread (it connects lazily).
  static absl::StatusOr<std::unique_ptr<CheckpointUploader>> Create(
      const CheckpointUploaderOptions& options);
  // Cancels the upload in flight and stops; what is still queued is not
  // sent. Call Flush() first.
  ~CheckpointUploader() override;

  CheckpointUploader(const CheckpointUploader&) = delete;
  CheckpointUploader& operator=(const CheckpointUploader&) = delete;

  // The latest logged step: epoch, λ_cl and loss terms of later uploads.
  void OnStep(const StepReport& report) override;
  // Queues a full checkpoint (kind FULL; `final` once the phase is "finish").
  void OnCheckpoint(const std::string& path, int64_t step) override;
  // Queues an export: "weights", "encoder" or "preview" (WEIGHTS, ENCODER,
  // PREVIEW); another kind is logged and skipped.
  void OnExport(const std::string& kind, const std::string& path, int64_t step) override;
  // False while `path` is queued or being uploaded, and for a file that was
  // dropped because the coordinator refused it or it could not be read (it
  // stays on local disk, never confirmed). True once confirmed, and for a
  // file dropped because the attempt was superseded.
  bool MayDeleteCheckpoint(const std::string& path) override;
  void OnPhase(const std::string& phase) override;

  // The end of the run: from now on the files flagged final (the final
  // checkpoint and exports) go before the others, then whatever else is
  // queued, each as soon as it is due. Waits up to `timeout` until every
  // queued file was uploaded or dropped. Returns OK when every file queued
  // since Create arrived; otherwise DEADLINE_EXCEEDED when some are still
  // queued (how many, and the last error), else the error that dropped the
  // last one (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, DATA_LOSS, or
  // FAILED_PRECONDITION when the attempt was superseded); the message names
  // the files (the first ten). When `not_uploaded` is set, it receives the
  // path of every file that did not arrive: the dropped ones in the order
  // they were dropped, then those still queued. Uploading goes on after a
  // timeout, until the destructor.
  absl::Status Flush(absl::Duration timeout, std::vector<std::string>* not_uploaded = nullptr);

  // Files the coordinator confirmed.
  int64_t uploaded() const { return uploaded_.load(); }
  // Upload tries that failed (each retry counts).
  int64_t errors() const { return errors_.load(); }
  // Files given up without being uploaded: refused by the coordinator
  // (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, ...), unreadable, or dropped with
  // the queue when the attempt was superseded (those queued after it too).
  int64_t dropped() const { return dropped_.load(); }
  // Tries that failed for a passing reason and put their file behind the
  // others (each one counts; a file deferred and then uploaded counts too).
  int64_t deferred() const { return deferred_.load(); }
  // The coordinator answered FAILED_PRECONDITION or NOT_FOUND: this attempt
  // is no longer current; the queue was dropped and nothing more is sent.
  bool attempt_superseded() const { return superseded_.load(); }

 private:
  struct Item {
    uint64_t id = 0;  // unique in this uploader
    v1::CheckpointMetadata metadata;
    std::string path;
    absl::Time due = absl::InfinitePast();  // not tried again before
    absl::Duration backoff;                 // the next deferral's delay (before jitter)
  };
  // A file that did not arrive, and why.
  struct Lost {
    std::string path;
    absl::Status why;
  };

  CheckpointUploader(const CheckpointUploaderOptions& options,
                     std::unique_ptr<v1::WorkerControl::Stub> stub);
  void Enqueue(v1::CheckpointKind kind, const std::string& path, int64_t step);
  void UploadLoop();
  // Waits until a queued file is due and returns a copy of it (it stays
  // queued until handled); nullopt once stopping.
  std::optional<Item> NextDue();
  // The queued file to try now, or nullptr (then `*wake` is when the next
  // one is due; InfiniteFuture when none is queued).
  Item* PickDue(absl::Time now, absl::Time* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One try of `item` (without mu_ held). Counts failures.
  absl::StatusOr<v1::Checkpoint> Upload(const Item& item);
  // What the loop does after a try of `item` that ended with `result`.
  void Handle(const Item& item, const absl::StatusOr<v1::Checkpoint>& result,
              std::mt19937_64& random);
  // Puts `item` behind the other queued files, due after its backoff.
  void Defer(const Item& item, const absl::Status& why, std::mt19937_64& random)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `item` from the queue as not uploaded because of `why`; `keep`:
  // MayDeleteCheckpoint stays false for its path.
  void Drop(const Item& item, const absl::Status& why, bool keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LinkIntoCache(const Item& item, const v1::Checkpoint& checkpoint);

  const CheckpointUploaderOptions options_;
  const std::unique_ptr<v1::WorkerControl::Stub> stub_;

  absl::Mutex mu_;
  std::optional<StepReport> latest_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  // Flush() was called: files flagged final go first.
  bool flushing_ ABSL_GUARDED_BY(mu_) = false;
  // Set when something the loop waits for changed (a file queued, a flush).
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Files to upload, in the order they are tried when due; the file being
  // uploaded stays here until its try is handled.
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  // Every file given up, in order.
  std::vector<Lost> lost_ ABSL_GUARDED_BY(mu_);
  // Paths dropped that stay on local disk (MayDeleteCheckpoint: false).
  std::vector<std::string> kept_ ABSL_GUARDED_BY(mu_);
  // What the coordinator answered when it superseded the attempt.
  absl::Status superseded_why_ ABSL_GUARDED_BY(mu_);
  // The last failed try (retried or not), for Flush()'s timeout message.
  absl::Status last_failure_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex log_mu_;
  absl::Time last_error_log_ ABSL_GUARDED_BY(log_mu_) = absl::InfinitePast();

  std::atomic<int64_t> uploaded_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> deferred_{0};
  std::atomic<bool> superseded_{false};
  std::atomic<bool> cache_warned_{false};

  std::thread thread_;
};

// "3.1 MiB", "512 B": a size for log lines.
std::string HumanBytes(int64_t bytes);

}  // namespace clmae
