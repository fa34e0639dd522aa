#include "worker/engine/train/evaluation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace clmae {
namespace {

// Two well separated clusters per class: k-NN and the probe find them; with
// shuffled labels k-NN is near chance.
TEST(EvaluationTest, KnnAndProbeOnSeparableFeatures) {
  torch::manual_seed(0);
  const int classes = 4, per = 50;
  auto centres = torch::randn({classes, 16}) * 5;
  auto make = [&](int n) {
    auto labels = torch::arange(classes).repeat_interleave(n);
    auto feats = centres.index_select(0, labels) + torch::randn({classes * n, 16});
    return std::make_pair(feats, labels);
  };
  auto [train_f, train_l] = make(per);
  auto [test_f, test_l] = make(20);
  EXPECT_GT(KnnTop1(train_f, train_l, test_f, test_l, 5), 0.95);
  EvalOptions o;
  o.probe_epochs = 20;
  o.batch_size = 32;
  EXPECT_GT(LinearProbeTop1(train_f, train_l, test_f, test_l, classes, o), 0.95);
  auto shuffled = train_l.index_select(0, torch::randperm(train_l.size(0)));
  EXPECT_LT(KnnTop1(train_f, shuffled, test_f, test_l, 5), 0.6);
}

TEST(EvaluationTest, KnnMajorityVoteWithSimilarityTieBreak) {
  // Test point at (1, 0): neighbours 2x class 1 (further), 2x class 0 (nearer), 1x class 2.
  auto train = torch::tensor({{1.0, 0.05}, {1.0, -0.05}, {1.0, 0.3}, {1.0, -0.3}, {0.0, 1.0}});
  auto labels = torch::tensor({0, 0, 1, 1, 2}, torch::kInt64);
  auto test = torch::tensor({{1.0, 0.0}});
  EXPECT_EQ(KnnTop1(train, labels, test, torch::tensor({0}, torch::kInt64), 5), 1.0);
  // k = 1: nearest only.
  EXPECT_EQ(KnnTop1(train, labels, test, torch::tensor({0}, torch::kInt64), 1), 1.0);
}

}  // namespace
}  // namespace clmae
