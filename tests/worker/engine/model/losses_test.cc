#include "worker/engine/model/losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numbers>

namespace clmae {
namespace {

torch::Tensor T(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> r;
  for (auto& row : rows) r.push_back(torch::tensor(row, torch::kFloat32));
  return torch::stack(r);
}

TEST(LossesTest, MaskedReconstructionAveragesRemovedPatchesOnly) {
  auto e = T({{1, 2, 3, 4}, {5, 6, 7, 8}});
  auto mask = T({{1, 0, 0, 1}, {0, 1, 0, 0}});
  // (1 + 4 + 6) / 3
  EXPECT_NEAR(MaskedReconstructionLoss(e, mask).item<double>(), 11.0 / 3.0, 1e-6);
}

TEST(LossesTest, MaskerReconstructionWeighsByOneMinusScore) {
  auto e = T({{1, 2}, {3, 4}});
  auto m = T({{0.5, 0.0}, {1.0, 0.75}});
  // weights 0.5, 1, 0, 0.25: (0.5 + 2 + 0 + 1) / 1.75
  EXPECT_NEAR(MaskerReconstructionLoss(e, m).item<double>(), 3.5 / 1.75, 1e-6);
}

TEST(LossesTest, GaussianMatchesFormula) {
  auto m = T({{0.5, 0.1}, {0.9, 0.62}});
  const double alpha = -1.0 / (2 * 0.12 * 0.12);
  const double beta = 1.0 / (0.12 * std::sqrt(2 * std::numbers::pi));
  double expect = 0;
  for (double v : {0.5, 0.1, 0.9, 0.62}) expect += std::exp(alpha * (v - 0.5) * (v - 0.5)) / beta;
  EXPECT_NEAR(GaussianLoss(m).item<double>(), expect / 4, 1e-6);
  // Peaks at 0.5 and is tiny at 0 and 1.
  EXPECT_GT(GaussianLoss(T({{0.5}})).item<double>(), 100 * GaussianLoss(T({{0.0}})).item<double>());
}

TEST(LossesTest, KlMatchesFormulaSummedOverBatch) {
  auto m = T({{0.2, 0.4}, {0.1, 0.1}});
  const double k = 0.25;
  auto kl = [&](double p) { return p * std::log(p / k) + (1 - p) * std::log((1 - p) / (1 - k)); };
  EXPECT_NEAR(KlLoss(m, k).item<double>(), kl(0.3) + kl(0.1), 1e-6);
  EXPECT_NEAR(KlLoss(T({{0.25, 0.25}}), k).item<double>(), 0.0, 1e-7);
}

TEST(LossesTest, DiversityEqualsPairwiseDefinition) {
  torch::manual_seed(3);
  for (int n : {2, 3, 7}) {
    auto m = torch::rand({n, 11});
    double sum = 0;
    int pairs = 0;
    for (int i = 0; i < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        sum += std::exp(-0.1 * (m[i] - m[j]).norm().item<double>());
        ++pairs;
      }
    }
    EXPECT_NEAR(DiversityLoss(m).item<double>(), sum / pairs, 1e-6) << "n=" << n;
  }
  EXPECT_EQ(DiversityLoss(torch::rand({1, 5})).item<double>(), 0.0);
}

TEST(LossesTest, DiversityGradientFiniteForIdenticalMasks) {
  auto m = torch::full({3, 4}, 0.3).requires_grad_(true);
  DiversityLoss(m).backward();
  EXPECT_TRUE(torch::isfinite(m.grad()).all().item<bool>());
}

TEST(LossesTest, MaskerLossCombinesWeightedTerms) {
  torch::manual_seed(1);
  auto e = torch::rand({4, 9});
  auto m = torch::rand({4, 9}) * 0.8 + 0.1;
  MaskerLossWeights w{.lambda_gauss = 0.5, .lambda_kl = 0.2, .lambda_div = 3.0};
  auto out = ComputeMaskerLoss(e, m, -0.4, 0.25, w);
  EXPECT_NEAR(out.gauss.item<double>(), 0.5 * GaussianLoss(m).item<double>(), 1e-6);
  EXPECT_NEAR(out.kl.item<double>(), 0.2 * KlLoss(m, 0.25).item<double>(), 1e-6);
  EXPECT_NEAR(out.div.item<double>(), 3.0 * DiversityLoss(m).item<double>(), 1e-6);
  EXPECT_NEAR(out.total.item<double>(),
              -0.4 * out.rec.item<double>() + out.gauss.item<double>() + out.kl.item<double>() +
                  out.div.item<double>(),
              1e-5);
}

}  // namespace
}  // namespace clmae
