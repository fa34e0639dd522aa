#include "worker/engine/data/distributed_sampler.h"

#include <numeric>
#include <utility>

#include "worker/engine/data/transforms.h"

namespace clmae {
namespace {

// Keeps the sampler's stream apart from the augmentation streams that share
// a seed.
constexpr uint64_t kSamplerStream = 0x5a3b1e0d15ea5e00ULL;

}  // namespace

DistributedSampler::DistributedSampler(int64_t dataset_size, int rank, int world_size,
                                       uint64_t seed, bool shuffle)
    : dataset_size_(dataset_size),
      rank_(rank),
      world_size_(world_size),
      seed_(seed),
      shuffle_(shuffle),
      num_samples_(0) {
  // Outside the documented preconditions the sampler is empty rather than
  // undefined: callers validate ranks and sizes with a Status before this.
  if (dataset_size_ > 0 && world_size_ > 0 && rank_ >= 0 && rank_ < world_size_) {
    num_samples_ = (dataset_size_ + world_size_ - 1) / world_size_;
  }
}

std::vector<int64_t> DistributedSampler::Indices(int64_t epoch) const {
  if (num_samples_ == 0) return {};
  std::vector<int64_t> order(dataset_size_);
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle_) {
    // Fisher-Yates from (seed + epoch), as torch seeds its generator with
    // seed + epoch; the permutation itself differs from torch.randperm's.
    SampleRng rng(seed_ + static_cast<uint64_t>(epoch), kSamplerStream);
    for (int64_t i = dataset_size_ - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(
          (static_cast<unsigned __int128>(rng.NextU64()) * static_cast<uint64_t>(i + 1)) >> 64);
      std::swap(order[i], order[j]);
    }
  }
  // Pad to num_samples * world_size by wrapping around the order (repeatedly
  // when the dataset is smaller than the padding), then take every W-th.
  std::vector<int64_t> mine;
  mine.reserve(num_samples_);
  for (int64_t k = 0; k < num_samples_; ++k) {
    const int64_t position = rank_ + k * world_size_;
    mine.push_back(order[position % dataset_size_]);
  }
  return mine;
}

}  // namespace clmae
