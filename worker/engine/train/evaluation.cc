#include "worker/engine/train/evaluation.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {

namespace {

// Calls `use` with each batch of at most `batch_size` transformed images
// (stacked, on the CPU) of the first `n` of `dataset`, and collects labels.
template <typename Use>
absl::Status ForEachBatch(const Dataset& dataset, const TransformOptions& transform, int64_t n,
                          int batch_size, std::vector<int64_t>& labels, Use use) {
  SampleRng unused(0, 0);  // the eval transform draws nothing
  for (int64_t start = 0; start < n; start += batch_size) {
    std::vector<torch::Tensor> imgs;
    for (int64_t i = start; i < std::min(n, start + batch_size); ++i) {
      ASSIGN_OR_RETURN(Example ex, dataset.Get(i));
      imgs.push_back(ApplyTransform(transform, ex.image, unused));
      labels.push_back(ex.label);
    }
    use(torch::stack(imgs));
  }
  return absl::OkStatus();
}

int64_t Limited(const Dataset& dataset, int64_t limit) {
  return limit > 0 ? std::min(limit, dataset.size()) : dataset.size();
}

}  // namespace

absl::StatusOr<SplitFeatures> ExtractFeatures(MaeVit& mae, const Dataset& dataset,
                                              const TransformOptions& transform, int64_t limit,
                                              int batch_size) {
  const auto device = mae->pos_embed.device();
  const bool was_training = mae->is_training();
  mae->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> cls, patch_mean;
  std::vector<int64_t> labels;
  const absl::Status status = ForEachBatch(
      dataset, transform, Limited(dataset, limit), batch_size, labels, [&](torch::Tensor batch) {
        auto f = mae->EncodeFeatures(batch.to(device));
        cls.push_back(f.cls.to(torch::kCPU, torch::kFloat32));
        patch_mean.push_back(f.patch_mean.to(torch::kCPU, torch::kFloat32));
      });
  mae->train(was_training);
  RETURN_IF_ERROR(status);
  return SplitFeatures{torch::cat(cls), torch::cat(patch_mean),
                       torch::tensor(labels, torch::kInt64)};
}

absl::StatusOr<SplitFeatures> ExtractPixels(const Dataset& dataset,
                                            const TransformOptions& transform, int64_t limit) {
  std::vector<torch::Tensor> pixels;
  std::vector<int64_t> labels;
  RETURN_IF_ERROR(ForEachBatch(
      dataset, transform, Limited(dataset, limit), 256, labels,
      [&](torch::Tensor batch) { pixels.push_back(batch.flatten(1).to(torch::kFloat32)); }));
  return SplitFeatures{torch::cat(pixels), torch::Tensor(), torch::tensor(labels, torch::kInt64)};
}

double KnnTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
               const torch::Tensor& test_features, const torch::Tensor& test_labels, int k) {
  torch::NoGradGuard no_grad;
  auto train = torch::nn::functional::normalize(
      train_features, torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto test = torch::nn::functional::normalize(
      test_features, torch::nn::functional::NormalizeFuncOptions().dim(1));
  const int64_t classes =
      std::max(train_labels.max().item<int64_t>(), test_labels.max().item<int64_t>()) + 1;
  k = static_cast<int>(std::min<int64_t>(k, train.size(0)));
  int64_t correct = 0;
  for (int64_t start = 0; start < test.size(0); start += 1024) {
    auto chunk = test.slice(0, start, start + 1024);
    auto [sim, idx] = chunk.matmul(train.t()).topk(k, 1);
    auto neighbour_labels = train_labels.index_select(0, idx.reshape({-1})).reshape(idx.sizes());
    auto votes = torch::zeros({chunk.size(0), classes}, torch::kFloat64);
    // Each neighbour adds one vote plus a tie-breaking share of its similarity
    // (sum < 1 vote, so counts decide first).
    votes.scatter_add_(1, neighbour_labels,
                       1.0 + sim.to(torch::kFloat64).clamp_min(-1.0).add(1.0) / (2.0 * k + 2.0));
    auto pred = votes.argmax(1);
    correct += (pred == test_labels.slice(0, start, start + 1024)).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(test.size(0));
}

double LinearProbeTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
                       const torch::Tensor& test_features, const torch::Tensor& test_labels,
                       int num_classes, const EvalOptions& o) {
  torch::manual_seed(o.seed);
  const int64_t d = train_features.size(1), n = train_features.size(0);
  torch::nn::BatchNorm1d bn(torch::nn::BatchNorm1dOptions(d).affine(false).eps(1e-6));
  torch::nn::Linear head(d, num_classes);
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(head->weight, 0.0, 0.01);
    torch::nn::init::zeros_(head->bias);
  }
  torch::optim::SGD opt(head->parameters(), torch::optim::SGDOptions(o.probe_lr).momentum(0.9));
  const int64_t steps_per_epoch = std::max<int64_t>(1, n / o.batch_size);
  const int64_t total = steps_per_epoch * o.probe_epochs;
  int64_t it = 0;
  for (int epoch = 0; epoch < o.probe_epochs; ++epoch) {
    auto perm = torch::randperm(n);
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++it) {
      const double lr = o.probe_lr * 0.5 * (1 + std::cos(std::numbers::pi * it / total));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
      auto idx = perm.slice(0, s * o.batch_size, std::min(n, (s + 1) * o.batch_size));
      auto logits = head(bn(train_features.index_select(0, idx)));
      auto loss = torch::nn::functional::cross_entropy(logits, train_labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
  bn->eval();
  torch::NoGradGuard no_grad;
  auto pred = head(bn(test_features)).argmax(1);
  return (pred == test_labels).to(torch::kFloat64).mean().item<double>();
}

namespace {

absl::Status CheckLabelled(const Dataset& train, const Dataset& test) {
  if (train.num_classes() <= 0 || test.num_classes() <= 0) {
    return absl::FailedPreconditionError("evaluation needs labelled datasets");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(MaeVit& mae, const Dataset& train, const Dataset& test,
                                    const TransformOptions& transform, const EvalOptions& o) {
  RETURN_IF_ERROR(CheckLabelled(train, test));
  return CatchAll("evaluation", [&]() -> absl::StatusOr<EvalResult> {
    ASSIGN_OR_RETURN(SplitFeatures tr,
                     ExtractFeatures(mae, train, transform, o.train_limit, o.batch_size));
    ASSIGN_OR_RETURN(SplitFeatures te,
                     ExtractFeatures(mae, test, transform, o.test_limit, o.batch_size));
    EvalResult r;
    r.train_images = tr.labels.size(0);
    r.test_images = te.labels.size(0);
    r.knn_top1 = KnnTop1(tr.cls, tr.labels, te.cls, te.labels, o.knn_k);
    r.knn_top1_patch_mean = KnnTop1(tr.patch_mean, tr.labels, te.patch_mean, te.labels, o.knn_k);
    if (o.probe_epochs > 0) {
      r.probe_top1 = LinearProbeTop1(tr.cls, tr.labels, te.cls, te.labels,
                                     std::max(train.num_classes(), test.num_classes()), o);
    }
    return r;
  });
}

absl::Status AddBaselines(const ModelConfig& config, uint64_t seed, const torch::Device& device,
                          const Dataset& train, const Dataset& test,
                          const TransformOptions& transform, const EvalOptions& o,
                          EvalResult& result) {
  RETURN_IF_ERROR(CheckLabelled(train, test));
  return CatchAll("evaluating the baselines", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(SplitFeatures tr, ExtractPixels(train, transform, o.train_limit));
    ASSIGN_OR_RETURN(SplitFeatures te, ExtractPixels(test, transform, o.test_limit));
    result.raw_pixels_knn_top1 = KnnTop1(tr.cls, tr.labels, te.cls, te.labels, o.knn_k);
    torch::manual_seed(seed);
    MaeVit initial(config);
    initial->to(device);
    EvalOptions knn_only = o;
    knn_only.probe_epochs = 0;
    ASSIGN_OR_RETURN(EvalResult r, Evaluate(initial, train, test, transform, knn_only));
    result.random_init_knn_top1 = r.knn_top1;
    result.random_init_knn_top1_patch_mean = r.knn_top1_patch_mean;
    return absl::OkStatus();
  });
}

}  // namespace clmae
