#pragma once

// Splits a dataset's indices among ranks like torch.utils.data
// DistributedSampler: shuffled from (seed, epoch), padded by wrapping around
// so every rank gets the same count, rank r takes positions r, r+W, r+2W, ...

#include <cstdint>
#include <vector>

namespace clmae {

// Immutable and cheap to copy; Indices() may be called from any thread.
class DistributedSampler {
 public:
  // `dataset_size` > 0, 0 <= rank < world_size; outside that the sampler is
  // empty (num_samples() 0), so validate them with a Status first.
  DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed,
                     bool shuffle = true);

  // This rank's indices for `epoch`; the same for the same (seed, epoch).
  // Shuffled by Fisher-Yates from (seed + epoch): deterministic, though not
  // the permutation torch.randperm would give.
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
