#include "worker/train/trainer_metrics.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <utility>
#include <vector>

namespace clmae {
namespace {

prometheus::Labels With(prometheus::Labels labels, const std::string& name,
                        const std::string& value) {
  labels.emplace(name, value);
  return labels;
}

const prometheus::Histogram::BucketBoundaries& StepBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *kBuckets;
}

prometheus::Gauge& NewGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help, const prometheus::Labels& labels) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
}

class UploadCollectable final : public prometheus::Collectable {
 public:
  UploadCollectable(const TrainerMetricsOptions& options, std::function<UploadCounts()> counts)
      : labels_{{"job", options.job}, {"rank", std::to_string(options.rank)}},
        counts_(std::move(counts)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const UploadCounts c = counts_();
    std::vector<prometheus::MetricFamily> out;
    out.push_back(
        Counter("clmae_trainer_checkpoint_uploads_total",
                "Checkpoints and exports this rank handed to the coordinator's store, by outcome",
                {{"uploaded", c.uploaded}, {"dropped", c.dropped}}));
    out.push_back(Counter("clmae_trainer_checkpoint_upload_deferrals_total",
                          "Upload tries that failed for a passing reason and were put behind "
                          "the other queued files",
                          {{"", c.deferred}}));
    out.push_back(Counter("clmae_trainer_checkpoint_upload_errors_total",
                          "Upload tries that failed (each retry counts)", {{"", c.errors}}));
    return out;
  }

 private:
  // A counter family; a non-empty first element labels its sample with
  // outcome=<it>.
  prometheus::MetricFamily Counter(
      const std::string& name, const std::string& help,
      const std::vector<std::pair<std::string, int64_t>>& samples) const {
    prometheus::MetricFamily family{name, help, prometheus::MetricType::Counter, {}};
    for (const auto& [outcome, value] : samples) {
      prometheus::ClientMetric metric;
      for (const auto& [key, label] : labels_) metric.label.push_back({key, label});
      if (!outcome.empty()) metric.label.push_back({"outcome", outcome});
      metric.counter.value = static_cast<double>(value);
      family.metric.push_back(std::move(metric));
    }
    return family;
  }

  const std::vector<std::pair<std::string, std::string>> labels_;
  const std::function<UploadCounts()> counts_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> UploadMetrics(const TrainerMetricsOptions& options,
                                                       std::function<UploadCounts()> counts) {
  return std::make_shared<UploadCollectable>(options, std::move(counts));
}

int64_t ResidentSetBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long pages_total = 0, pages_resident = 0;
  const int read = std::fscanf(f, "%lld %lld", &pages_total, &pages_resident);
  std::fclose(f);
  return read == 2 ? pages_resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

TrainerMetrics::TrainerMetrics(prometheus::Registry& registry, const TrainerMetricsOptions& options)
    : options_(options),
      labels_({{"job", options.job}, {"rank", std::to_string(options.rank)}}),
      curriculum_(NewGauge(registry, "clmae_trainer_curriculum_factor",
                           "Curriculum factor lambda_cl of the latest iteration", labels_)),
      loss_family_(prometheus::BuildGauge()
                       .Name("clmae_trainer_loss")
                       .Help("Loss terms of the latest iteration, averaged over ranks (masker "
                             "terms 0 in plain-MAE mode)")
                       .Register(registry)),
      lr_(NewGauge(registry, "clmae_trainer_learning_rate", "Learning rate of the latest iteration",
                   labels_)),
      step_(NewGauge(registry, "clmae_trainer_step",
                     "Iterations done (including those before a resume)", labels_)),
      epoch_(NewGauge(registry, "clmae_trainer_epoch", "Current epoch (0-based)", labels_)),
      total_steps_(
          NewGauge(registry, "clmae_trainer_total_steps", "Iterations the run will do", labels_)),
      images_(prometheus::BuildCounter()
                  .Name("clmae_trainer_images_total")
                  .Help("Images this rank trained on since the process started")
                  .Register(registry)
                  .Add(labels_)),
      phase_family_(prometheus::BuildHistogram()
                        .Name("clmae_trainer_step_phase_seconds")
                        .Help("Time per iteration in each phase (allreduce_wait is the part of "
                              "optimizer spent waiting for gradient all-reduces)")
                        .Register(registry)),
      step_seconds_(prometheus::BuildHistogram()
                        .Name("clmae_trainer_step_seconds")
                        .Help("Wall time of a whole iteration")
                        .Register(registry)
                        .Add(labels_, StepBuckets())),
      keep_score_mean_(NewGauge(registry, "clmae_trainer_mask_keep_score_mean",
                                "Mean masker score of the latest iteration", labels_)),
      near_binary_(NewGauge(registry, "clmae_trainer_mask_near_binary_ratio",
                            "Share of masker scores below 0.1 or above 0.9", labels_)),
      overlap_family_(prometheus::BuildGauge()
                          .Name("clmae_trainer_mask_overlap_ratio")
                          .Help("Share of the kept patches of a fixed batch of images that were "
                                "also kept at the previous log step")
                          .Register(registry)),
      quality_family_(prometheus::BuildGauge()
                          .Name("clmae_trainer_knn_top1")
                          .Help("k-NN top-1 (fraction) of the encoder at the latest evaluation "
                                "during training, by feature (class_token, patch_mean)")
                          .Register(registry)),
      eval_seconds_family_(prometheus::BuildGauge()
                               .Name("clmae_trainer_eval_seconds")
                               .Help("Wall time of the latest evaluation during training")
                               .Register(registry)),
      memory_family_(prometheus::BuildGauge()
                         .Name("clmae_trainer_device_memory_bytes")
                         .Help("Device memory in use: CUDA allocator allocated/reserved, or "
                               "the process resident set (rss) on CPU")
                         .Register(registry)) {
  const char* terms[] = {"mae", "masker_recon", "gauss", "kl", "div", "masker_total"};
  for (int i = 0; i < 6; ++i) loss_[i] = &loss_family_.Add(With(labels_, "term", terms[i]));
  const char* phases[] = {"data", "phase_a", "phase_b", "allreduce_wait", "optimizer"};
  for (int i = 0; i < 5; ++i) {
    phase_[i] = &phase_family_.Add(With(labels_, "phase", phases[i]), StepBuckets());
  }
  auto& grad = prometheus::BuildGauge()
                   .Name("clmae_trainer_grad_norm")
                   .Help("Gradient norm before clipping at the latest optimizer step")
                   .Register(registry);
  grad_norm_[0] = &grad.Add(With(labels_, "network", "mae"));
  grad_norm_[1] = &grad.Add(With(labels_, "network", "masker"));
  UpdateDeviceMemory();
}

void TrainerMetrics::OnStart(int64_t start_step, int64_t total_steps) {
  step_.Set(static_cast<double>(start_step));
  total_steps_.Set(static_cast<double>(total_steps));
}

void TrainerMetrics::OnIteration(const StepReport& r) {
  const StepStats& s = r.stats;
  curriculum_.Set(r.lambda_cl);
  const double losses[] = {s.loss_mae,  s.masker_rec, s.masker_gauss,
                           s.masker_kl, s.masker_div, s.masker_total};
  for (int i = 0; i < 6; ++i) loss_[i]->Set(losses[i]);
  lr_.Set(r.lr);
  step_.Set(static_cast<double>(r.step));
  epoch_.Set(static_cast<double>(r.epoch));
  total_steps_.Set(static_cast<double>(r.total_steps));
  // images_seen counts every rank's images since step 0; this rank's share
  // of the iterations this process ran.
  const int64_t delta = last_images_seen_ < 0 ? (r.step > 0 ? r.images_seen / r.step : 0)
                                              : r.images_seen - last_images_seen_;
  last_images_seen_ = r.images_seen;
  if (delta > 0) images_.Increment(static_cast<double>(delta) / std::max(1, options_.world_size));
  const double phases[] = {r.data_seconds, s.phase_a_seconds, s.phase_b_seconds,
                           s.comm_wait_seconds, s.optimizer_seconds};
  for (int i = 0; i < 5; ++i) phase_[i]->Observe(phases[i]);
  step_seconds_.Observe(r.step_seconds);
  keep_score_mean_.Set(s.mask_mean_score);
  near_binary_.Set(s.mask_near_binary);
  if (s.stepped) {
    grad_norm_[0]->Set(s.grad_norm_mae);
    grad_norm_[1]->Set(s.grad_norm_masker);
  }
  if (r.mask_overlap.has_value()) {
    if (overlap_ == nullptr) overlap_ = &overlap_family_.Add(labels_);
    overlap_->Set(*r.mask_overlap);
  }
}

void TrainerMetrics::OnStep(const StepReport& /*report*/) { UpdateDeviceMemory(); }

void TrainerMetrics::OnQuality(const QualityReport& q) {
  if (quality_[0] == nullptr) {
    quality_[0] = &quality_family_.Add(With(labels_, "feature", "class_token"));
    quality_[1] = &quality_family_.Add(With(labels_, "feature", "patch_mean"));
    eval_seconds_ = &eval_seconds_family_.Add(labels_);
  }
  quality_[0]->Set(q.knn_top1);
  quality_[1]->Set(q.knn_top1_patch_mean);
  eval_seconds_->Set(q.seconds);
}

void TrainerMetrics::UpdateDeviceMemory() {
  torch::Device device = torch::kCPU;
  try {
    device = torch::Device(options_.device);
  } catch (const std::exception&) {
  }
  if (device.is_cuda() && torch::cuda::is_available()) {
    const int index = device.has_index() ? device.index() : 0;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    // [0]: the aggregate over small and large pools.
    memory_family_.Add(With(labels_, "kind", "allocated"))
        .Set(static_cast<double>(stats.allocated_bytes[0].current));
    memory_family_.Add(With(labels_, "kind", "reserved"))
        .Set(static_cast<double>(stats.reserved_bytes[0].current));
    return;
  }
  memory_family_.Add(With(labels_, "kind", "rss")).Set(static_cast<double>(ResidentSetBytes()));
}

}  // namespace clmae
