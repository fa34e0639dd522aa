#pragma once

// MNIST-style IDX files (Fashion-MNIST, MNIST, KMNIST), raw or gzip, read
// fully into memory when opened.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/types.h"
#include "worker/engine/data/dataset.h"

namespace clmae {

// One split of an IDX dataset: every image is uint8 [1, H, W]. Immutable after
// Open, so Get() is safe from any number of threads.
class IdxDataset : public Dataset {
 public:
  // Reads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and
  // `<dir>/<prefix>-labels-idx1-ubyte[.gz]`, prefix "train" for split "train"
  // and "t10k" for split "test"; the uncompressed file wins when both exist.
  // NOT_FOUND names the missing file; INVALID_ARGUMENT an unknown split, a
  // bad magic number, a size that disagrees with the header, or image and
  // label counts that differ; DATA_LOSS corrupt gzip; FAILED_PRECONDITION a
  // gzip file in a build without zlib.
  static absl::StatusOr<std::unique_ptr<IdxDataset>> Open(const std::string& dir,
                                                          const std::string& split);

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  // OUT_OF_RANGE for an index outside [0, size()).
  absl::StatusOr<Example> Get(int64_t index) const override;
  int channels() const override { return 1; }
  int num_classes() const override { return num_classes_; }
  std::string Describe() const override { return description_; }

  int64_t height() const { return images_.size(2); }
  int64_t width() const { return images_.size(3); }

 private:
  IdxDataset(torch::Tensor images, std::vector<int64_t> labels, std::string description);

  torch::Tensor images_;  // uint8 [N, 1, H, W]
  std::vector<int64_t> labels_;
  int num_classes_ = 0;  // max label + 1
  std::string description_;
};

}  // namespace clmae
