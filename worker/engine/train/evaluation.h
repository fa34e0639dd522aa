#pragma once

// Representation quality of the frozen encoder (docs/method.md §8.1): k-nearest-
// neighbour classification and a linear probe on the class token's feature.

#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/data/transforms.h"
#include "worker/engine/model/mae_vit.h"

namespace clmae {

struct EvalOptions {
  int knn_k = 5;
  // Linear probe: BatchNorm (no affine) + Linear on frozen features, trained
  // with SGD (momentum 0.9, cosine lr) and cross-entropy; 0 epochs = skip.
  int probe_epochs = 10;
  double probe_lr = 0.1;
  int batch_size = 256;
  int64_t train_limit = 0;  // first N images of each split (0 = all)
  int64_t test_limit = 0;
  uint64_t seed = 0;
};

struct EvalResult {
  double knn_top1 = 0;                                           // fraction in [0, 1]
  double probe_top1 = std::numeric_limits<double>::quiet_NaN();  // NaN when skipped
  int64_t train_images = 0;
  int64_t test_images = 0;
};

// Features [N, D] (float32, CPU) and labels [N] (int64) of the first `limit`
// images of `dataset` under `transform` (deterministic).
absl::Status ExtractFeatures(MaeVit& mae, const Dataset& dataset, const TransformOptions& transform,
                             int64_t limit, int batch_size, torch::Tensor& features,
                             torch::Tensor& labels);

// k-NN top-1 (cosine similarity, majority vote, ties to the larger summed
// similarity) of `test` against `train` features.
double KnnTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
               const torch::Tensor& test_features, const torch::Tensor& test_labels, int k);

// Trains a linear probe on `train` features and returns its top-1 on `test`.
double LinearProbeTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
                       const torch::Tensor& test_features, const torch::Tensor& test_labels,
                       int num_classes, const EvalOptions& options);

// Both, on labelled datasets. FAILED_PRECONDITION if a dataset is unlabelled.
absl::StatusOr<EvalResult> Evaluate(MaeVit& mae, const Dataset& train, const Dataset& test,
                                    const TransformOptions& transform, const EvalOptions& options);

}  // namespace clmae
