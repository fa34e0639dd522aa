#pragma once

// Every metric family of clmae-train (docs/metrics.md, "Trainer"): one
// reporter per rank, holding the children labelled with its job and rank,
// fed by the engine's per-iteration reports.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "worker/engine/train/trainer.h"

namespace clmae {

struct TrainerMetricsOptions {
  std::string job = "standalone";  // the job id
  int rank = 0;
  int world_size = 1;
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N": which memory to report
};

// Called on the training thread (like every TrainObserver); the registry may
// be scraped from any thread. The registry must outlive this object.
class TrainerMetrics final : public TrainObserver {
 public:
  TrainerMetrics(prometheus::Registry& registry, const TrainerMetricsOptions& options);

  void OnStart(int64_t start_step, int64_t total_steps) override;
  // Every iteration: a few atomic stores and six histogram observations
  // (the cost bench/metrics_bench.cc measures).
  void OnIteration(const StepReport& report) override;
  // Logged iterations: device memory (a /proc read or the CUDA allocator's
  // statistics, too dear for every step).
  void OnStep(const StepReport& report) override;
  // An evaluation during training: k-NN top-1 by feature and its duration.
  void OnQuality(const QualityReport& report) override;
  void UpdateDeviceMemory();

 private:
  const TrainerMetricsOptions options_;
  const prometheus::Labels labels_;
  prometheus::Gauge& curriculum_;
  prometheus::Family<prometheus::Gauge>& loss_family_;
  prometheus::Gauge* loss_[6];
  prometheus::Gauge& lr_;
  prometheus::Gauge& step_;
  prometheus::Gauge& epoch_;
  prometheus::Gauge& total_steps_;
  prometheus::Counter& images_;
  prometheus::Family<prometheus::Histogram>& phase_family_;
  prometheus::Histogram* phase_[5];
  prometheus::Histogram& step_seconds_;
  prometheus::Gauge& keep_score_mean_;
  prometheus::Gauge& near_binary_;
  prometheus::Family<prometheus::Gauge>& overlap_family_;
  prometheus::Gauge* overlap_ = nullptr;  // added at the first overlap measured
  prometheus::Family<prometheus::Gauge>& quality_family_;
  prometheus::Gauge* quality_[2] = {nullptr, nullptr};  // added at the first evaluation
  prometheus::Family<prometheus::Gauge>& eval_seconds_family_;
  prometheus::Gauge* eval_seconds_ = nullptr;
  prometheus::Gauge* grad_norm_[2];
  prometheus::Family<prometheus::Gauge>& memory_family_;
  int64_t last_images_seen_ = -1;
};

// Resident set size of this process in bytes (0 when /proc is unreadable).
int64_t ResidentSetBytes();

// The checkpoint uploader's counts (rank 0 with --coordinator), as
// CheckpointUploader's accessors give them.
struct UploadCounts {
  int64_t uploaded = 0;  // files the coordinator confirmed
  int64_t dropped = 0;   // files given up without being uploaded
  int64_t deferred = 0;  // tries that failed for a passing reason and waited
  int64_t errors = 0;    // upload tries that failed (each retry counts)
};

// clmae_trainer_checkpoint_uploads_total{outcome}, ..._upload_deferrals_total
// and ..._upload_errors_total with the job and rank labels of `options`,
// read from `counts` at every scrape (so nothing has to push them). `counts`
// must stay callable for as long as the collectable is registered.
std::shared_ptr<prometheus::Collectable> UploadMetrics(const TrainerMetricsOptions& options,
                                                       std::function<UploadCounts()> counts);

}  // namespace clmae
