#include "worker/engine/data/distributed_sampler.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;

// All ranks' indices for one epoch, concatenated.
std::vector<int64_t> AllRanks(int64_t n, int world, uint64_t seed, int64_t epoch,
                              bool shuffle = true) {
  std::vector<int64_t> all;
  for (int r = 0; r < world; ++r) {
    DistributedSampler sampler(n, r, world, seed, shuffle);
    std::vector<int64_t> mine = sampler.Indices(epoch);
    EXPECT_EQ(static_cast<int64_t>(mine.size()), sampler.num_samples());
    all.insert(all.end(), mine.begin(), mine.end());
  }
  return all;
}

TEST(DistributedSamplerTest, DivisibleShardsAreDisjointAndCovering) {
  std::vector<int64_t> all = AllRanks(24, 4, 1, 0);
  ASSERT_EQ(all.size(), 24u);
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(24);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);  // each index exactly once
}

TEST(DistributedSamplerTest, NonDivisiblePadsByWrapping) {
  // 10 samples on 4 ranks: ceil(10 / 4) = 3 each, 2 repeated.
  DistributedSampler sampler(10, 0, 4, 3);
  EXPECT_EQ(sampler.num_samples(), 3);
  std::vector<int64_t> all = AllRanks(10, 4, 3, 5);
  ASSERT_EQ(all.size(), 12u);
  std::map<int64_t, int> count;
  for (int64_t i : all) ++count[i];
  EXPECT_EQ(count.size(), 10u);  // covering
  int repeated = 0;
  for (const auto& [index, times] : count) {
    EXPECT_GE(index, 0);
    EXPECT_LT(index, 10);
    EXPECT_LE(times, 2);
    repeated += times - 1;
  }
  EXPECT_EQ(repeated, 2);
  // Positions 0..9 are a permutation; 10 and 11 (last of ranks 2 and 3)
  // repeat positions 0 and 1 (first of ranks 0 and 1), as torch pads.
  std::vector<std::vector<int64_t>> shard;
  for (int r = 0; r < 4; ++r) shard.push_back(DistributedSampler(10, r, 4, 3).Indices(5));
  EXPECT_EQ(shard[2][2], shard[0][0]);
  EXPECT_EQ(shard[3][2], shard[1][0]);
  std::set<int64_t> without_padding;
  for (int r = 0; r < 4; ++r) {
    for (int k = 0; k < (r < 2 ? 3 : 2); ++k) without_padding.insert(shard[r][k]);
  }
  EXPECT_EQ(without_padding.size(), 10u);
}

TEST(DistributedSamplerTest, UnshuffledFollowsTorchLayout) {
  // torch: indices 0..6 padded with 0, rank r takes r, r+3, r+6.
  EXPECT_THAT(DistributedSampler(7, 0, 3, 0, false).Indices(0), ElementsAre(0, 3, 6));
  EXPECT_THAT(DistributedSampler(7, 1, 3, 0, false).Indices(0), ElementsAre(1, 4, 0));
  EXPECT_THAT(DistributedSampler(7, 2, 3, 0, false).Indices(0), ElementsAre(2, 5, 1));
  // More padding than data: wraps repeatedly.
  EXPECT_THAT(DistributedSampler(2, 4, 5, 0, false).Indices(0), ElementsAre(0));
}

TEST(DistributedSamplerTest, ReshufflesAcrossEpochsAndRepeatsWithinOne) {
  DistributedSampler sampler(100, 1, 2, 42);
  std::vector<int64_t> e0 = sampler.Indices(0);
  EXPECT_EQ(e0, sampler.Indices(0));
  EXPECT_EQ(e0, DistributedSampler(100, 1, 2, 42).Indices(0));
  EXPECT_NE(e0, sampler.Indices(1));
  EXPECT_NE(e0, DistributedSampler(100, 1, 2, 43).Indices(0));
  // Shuffled, not the identity layout.
  EXPECT_NE(e0, DistributedSampler(100, 1, 2, 42, false).Indices(0));
  // Every epoch is still a partition.
  for (int64_t epoch : {1, 2, 7}) {
    std::vector<int64_t> all = AllRanks(100, 2, 42, epoch);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  }
}

TEST(DistributedSamplerTest, InvalidArgumentsGiveAnEmptySampler) {
  EXPECT_EQ(DistributedSampler(10, 2, 2, 0).num_samples(), 0);
  EXPECT_TRUE(DistributedSampler(10, -1, 2, 0).Indices(0).empty());
  EXPECT_EQ(DistributedSampler(0, 0, 1, 0).num_samples(), 0);
}

}  // namespace
}  // namespace clmae
