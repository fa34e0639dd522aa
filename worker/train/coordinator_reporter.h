#pragma once

// Progress of one trainer rank to the coordinator (WorkerControl
// .ReportProgress): the training thread only stores the latest report; a
// background thread sends it, so a slow or unreachable coordinator never
// holds up or fails training. The final result is sent synchronously.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "services/grpc_client.h"
#include "worker/engine/train/trainer.h"

namespace clmae {

struct CoordinatorReporterOptions {
  ClientOptions client;  // coordinator address, worker token, TLS files
  std::string job_id;
  int attempt = 1;
  int rank = 0;
  // At most one progress RPC per interval; and at least one (the last
  // progress again, freshly stamped) while training is slow to log. Only
  // reports in a phase other than "train" count as liveness for the
  // coordinator's hang detection; in "train" only a growing step does.
  absl::Duration min_interval = absl::Seconds(2);
  absl::Duration rpc_timeout = absl::Seconds(5);  // per RPC
  int result_attempts = 4;                        // tries for the result (and Flush), with backoff
  std::string output_dir;                         // JobResult.output_dir (rank 0's output folder)
};

// The TrainObserver callbacks are for the training thread; Flush() and the
// accessors may be called from any thread. Rank 0 reports every field
// (losses, lr, λ_cl, throughput); other ranks report their step, epoch and
// totals only (what the coordinator's per-rank hang detection needs).
class CoordinatorReporter : public TrainObserver {
 public:
  // INVALID_ARGUMENT for an empty job id, attempt < 1, rank < 0,
  // min_interval <= 0 or result_attempts < 1; channel errors as
  // MakeClientChannel's. Starts the sender thread (it connects lazily).
  static absl::StatusOr<std::unique_ptr<CoordinatorReporter>> Create(
      const CoordinatorReporterOptions& options);
  // Stops the sender without sending what is pending; call Flush() first.
  ~CoordinatorReporter() override;

  CoordinatorReporter(const CoordinatorReporter&) = delete;
  CoordinatorReporter& operator=(const CoordinatorReporter&) = delete;

  void OnStart(int64_t start_step, int64_t total_steps) override;
  void OnStep(const StepReport& report) override;
  // Reports from now on carry `phase` (Progress.phase): in "finish" the
  // step no longer advances and the keep-alives prove the rank alive.
  void OnPhase(const std::string& phase) override;
  // Rank 0: sends the result (knn_top1, and probe_top1 when the probe ran)
  // with the latest progress, synchronously, retrying transient errors up to
  // result_attempts times; a result that still did not go is retried by
  // Flush(). Other ranks: ignored.
  void OnEvaluation(const EvalResult& result) override;
  // Rank 0: every later report carries this evaluation (Progress.quality).
  void OnQuality(const QualityReport& report) override;

  // Sends the latest progress, and the result if it has not been delivered,
  // synchronously with retries. Returns the last error (OK when everything
  // arrived). Call once training is done, before the process exits.
  absl::Status Flush();

  // RPCs that failed so far (each try counts).
  int64_t rpc_errors() const { return rpc_errors_.load(); }
  // The coordinator answered FAILED_PRECONDITION or NOT_FOUND: this attempt
  // is no longer current and the trainer should stop.
  bool attempt_superseded() const { return superseded_.load(); }

 private:
  CoordinatorReporter(const CoordinatorReporterOptions& options,
                      std::unique_ptr<v1::WorkerControl::Stub> stub);
  void SendLoop();
  // One RPC (under send_mu_). Counts and logs failures.
  absl::Status Send(const v1::ReportProgressRequest& request);
  // Send() with retries of transient errors.
  absl::Status SendWithRetries(const v1::ReportProgressRequest& request);
  // The request for the latest progress (with a fresh update_time).
  v1::ReportProgressRequest LatestRequest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorReporterOptions options_;
  const std::unique_ptr<v1::WorkerControl::Stub> stub_;

  absl::Mutex mu_;
  v1::Progress progress_ ABSL_GUARDED_BY(mu_);
  std::string phase_ ABSL_GUARDED_BY(mu_) = "train";
  std::optional<v1::Quality> quality_ ABSL_GUARDED_BY(mu_);
  bool has_progress_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<v1::JobResult> pending_result_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex send_mu_;  // one RPC at a time, in order
  absl::Time last_error_log_ ABSL_GUARDED_BY(send_mu_) = absl::InfinitePast();
  std::atomic<int64_t> rpc_errors_{0};
  std::atomic<bool> superseded_{false};

  std::thread thread_;
};

// What the coordinator stores for a StepReport (phase "train"). `full` adds
// the loss terms, λ_cl, lr and throughput (rank 0); otherwise step, epoch and
// totals only.
v1::Progress ProgressFromReport(const StepReport& report, bool full);

// The evaluation during training as Progress.quality.
v1::Quality QualityFromReport(const QualityReport& report);

// knn_top1, knn_top1_patch_mean, probe_top1 and the baselines; the ones not
// measured (NaN) are left out.
v1::JobResult ResultFromEvaluation(const EvalResult& result, const std::string& output_dir);

}  // namespace clmae
