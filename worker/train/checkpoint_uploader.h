#pragma once

// Rank 0's files to the coordinator's checkpoint store
// (WorkerControl.UploadCheckpoint): every full checkpoint, the safetensors
// exports and the previews, in the order they were written, from a
// background thread. The training thread only queues a file; a slow,
// unreachable or full coordinator never holds up or fails training. The
// trainer keeps a checkpoint on disk until the coordinator has confirmed it
// (MayDeleteCheckpoint).

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>

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
  // Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
  // INTERNAL, ABORTED, UNKNOWN) are retried after a delay that doubles from
  // initial_backoff up to max_backoff, each drawn from [delay/2, delay].
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
  // False while `path` is queued or being uploaded.
  bool MayDeleteCheckpoint(const std::string& path) override;
  void OnPhase(const std::string& phase) override;

  // Waits up to `timeout` until every queued file was uploaded or dropped.
  // Returns OK when all of them arrived; otherwise the last error (a file
  // dropped, the attempt superseded), or DEADLINE_EXCEEDED naming how many
  // files are still waiting and why. Uploading goes on after a timeout,
  // until the destructor.
  absl::Status Flush(absl::Duration timeout);

  // Files the coordinator confirmed.
  int64_t uploaded() const { return uploaded_.load(); }
  // Upload tries that failed (each retry counts).
  int64_t errors() const { return errors_.load(); }
  // The coordinator answered FAILED_PRECONDITION or NOT_FOUND: this attempt
  // is no longer current; the queue was dropped and nothing more is sent.
  bool attempt_superseded() const { return superseded_.load(); }

 private:
  struct Item {
    v1::CheckpointMetadata metadata;
    std::string path;
  };

  CheckpointUploader(const CheckpointUploaderOptions& options,
                     std::unique_ptr<v1::WorkerControl::Stub> stub);
  void Enqueue(v1::CheckpointKind kind, const std::string& path, int64_t step);
  void UploadLoop();
  // One try of the queue's head (without mu_ held). Counts failures.
  absl::StatusOr<v1::Checkpoint> Upload(const Item& item);
  // What the loop does after a try that ended with `status`.
  void Handle(const Item& item, const absl::StatusOr<v1::Checkpoint>& result);
  void LinkIntoCache(const Item& item, const v1::Checkpoint& checkpoint);
  // The queue's head was given up because of `why`.
  void Drop(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs `line`, at most once per interval unless `always`.
  void LogFailure(const std::string& line, bool always);

  const CheckpointUploaderOptions options_;
  const std::unique_ptr<v1::WorkerControl::Stub> stub_;

  absl::Mutex mu_;
  std::optional<StepReport> latest_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  // The head is the file being uploaded (or waiting to be retried).
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  // Why the last file was given up (dropped or superseded); OK if none was.
  absl::Status last_drop_ ABSL_GUARDED_BY(mu_);
  // The last failed try (retried or not), for Flush()'s timeout message.
  absl::Status last_failure_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex log_mu_;
  absl::Time last_error_log_ ABSL_GUARDED_BY(log_mu_) = absl::InfinitePast();

  std::atomic<int64_t> uploaded_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<bool> superseded_{false};
  std::atomic<bool> cache_warned_{false};

  std::thread thread_;
};

// "3.1 MiB", "512 B": a size for log lines.
std::string HumanBytes(int64_t bytes);

}  // namespace clmae
