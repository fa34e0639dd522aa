#pragma once

// Splits a dataset's indices among ranks like torch.utils.data
// DistributedSampler: shuffled from (seed, epoch), padded by wrapping around
// so every rank gets the same count, rank r takes positions r, r+W, r+2W, ...

#include <cstdint>
#include <vector>

namespace clmae {

class DistributedSampler {
 public:
  // `dataset_size` > 0, 0 <= rank < world_size.
  DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed,
                     bool shuffle = true);

  // This rank's indices for `epoch`; the same for the same (seed, epoch).
  std::vector<int64_t> Indices(int64_t epoch) const;
  // Number of indices each rank gets per epoch.
  int64_t num_samples() const { return num_samples_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  int64_t dataset_size_;
  int rank_;
  int world_size_;
  uint64_t seed_;
  bool shuffle_;
  int64_t num_samples_;
};

}  // namespace clmae
