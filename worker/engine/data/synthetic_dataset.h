#pragma once

// Deterministic synthetic images for tests and benchmarks: a smooth shape on
// a gradient background, the shape and its colour set by the class, so a
// model has something real to learn without any files.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/data/dataset.h"

namespace clmae {

struct SyntheticOptions {
  int64_t size = 1024;  // number of images
  int height = 28;
  int width = 28;
  int channels = 3;  // 1 or 3
  int classes = 10;  // 0: unlabelled (label -1)
  uint64_t seed = 0;
};

// Image i depends only on (seed, i); label = i % classes. Renders on each
// Get(); stateless, so safe from any number of threads.
class SyntheticDataset : public Dataset {
 public:
  // INVALID_ARGUMENT names the out-of-range field.
  static absl::StatusOr<std::unique_ptr<SyntheticDataset>> Create(const SyntheticOptions& options);

  int64_t size() const override { return options_.size; }
  // OUT_OF_RANGE for an index outside [0, size()).
  absl::StatusOr<Example> Get(int64_t index) const override;
  int channels() const override { return options_.channels; }
  int num_classes() const override { return options_.classes; }
  std::string Describe() const override;

 private:
  explicit SyntheticDataset(const SyntheticOptions& options) : options_(options) {}

  SyntheticOptions options_;
};

}  // namespace clmae
