#pragma once

// Representation quality of the frozen encoder (docs/method.md §8.1): k-nearest-
// neighbour classification on the class token's feature and on the mean of
// the patch tokens', a linear probe on the class token's, and the baselines
// a trained encoder must beat (raw pixels, the untrained encoder).

#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "common/model_config.h"
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

// Quality of one encoder. k-NN runs on both kinds of feature (class token
// and patch-token mean); the linear probe on the class token's.
struct EvalResult {
  double knn_top1 = 0;                                           // class token; fraction in [0, 1]
  double knn_top1_patch_mean = 0;                                // mean of the patch tokens
  double probe_top1 = std::numeric_limits<double>::quiet_NaN();  // NaN when skipped
  // Baselines on the same split, NaN until AddBaselines fills them: k-NN on
  // the raw (normalised) pixels, and on the encoder as initialised from the
  // run's seed before any training.
  double raw_pixels_knn_top1 = std::numeric_limits<double>::quiet_NaN();
  double random_init_knn_top1 = std::numeric_limits<double>::quiet_NaN();
  double random_init_knn_top1_patch_mean = std::numeric_limits<double>::quiet_NaN();
  int64_t train_images = 0;
  int64_t test_images = 0;
};

// The features of a labelled split: float32 on the CPU, one row per image.
struct SplitFeatures {
  torch::Tensor cls;         // [N, D]
  torch::Tensor patch_mean;  // [N, D]
  torch::Tensor labels;      // [N] int64
};

// Encoder features of the first `limit` images (0 = all) of `dataset` under
// the deterministic `transform`.
absl::StatusOr<SplitFeatures> ExtractFeatures(MaeVit& mae, const Dataset& dataset,
                                              const TransformOptions& transform, int64_t limit,
                                              int batch_size);

// The transformed images themselves, flattened to [N, C*H*W] (`cls`; no
// patch_mean): the raw-pixel baseline.
absl::StatusOr<SplitFeatures> ExtractPixels(const Dataset& dataset,
                                            const TransformOptions& transform, int64_t limit);

// k-NN top-1 (cosine similarity, majority vote, ties to the larger summed
// similarity) of `test` against `train` features.
double KnnTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
               const torch::Tensor& test_features, const torch::Tensor& test_labels, int k);

// Trains a linear probe on `train` features and returns its top-1 on `test`.
double LinearProbeTop1(const torch::Tensor& train_features, const torch::Tensor& train_labels,
                       const torch::Tensor& test_features, const torch::Tensor& test_labels,
                       int num_classes, const EvalOptions& options);

// k-NN on both feature kinds, and the probe when options.probe_epochs > 0,
// on labelled datasets. FAILED_PRECONDITION if a dataset is unlabelled.
absl::StatusOr<EvalResult> Evaluate(MaeVit& mae, const Dataset& train, const Dataset& test,
                                    const TransformOptions& transform, const EvalOptions& options);

// Fills the baselines of `result` on the same split and options: raw-pixel
// k-NN, and k-NN of a MaeVit built from `config` on `device` right after
// torch::manual_seed(seed), which is how the trainer initialises its
// encoder (so it is the run's own starting point unless it was initialised
// from a file). Reseeds the global generator.
absl::Status AddBaselines(const ModelConfig& config, uint64_t seed, const torch::Device& device,
                          const Dataset& train, const Dataset& test,
                          const TransformOptions& transform, const EvalOptions& options,
                          EvalResult& result);

}  // namespace clmae
