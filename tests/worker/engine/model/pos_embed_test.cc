#include "worker/engine/model/pos_embed.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace clmae {
namespace {

TEST(PosEmbedTest, ShapeAndZeroClassRow) {
  auto pe = SinCosPosEmbed2d(16, 3, 3, /*cls_token=*/true);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{1, 10, 16}));
  EXPECT_EQ(pe[0][0].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(SinCosPosEmbed2d(16, 3, 3, false).size(1), 9);
}

// Hand-computed values for dim 8 on a 2x2 grid: each half (4 channels) is
// [sin(p w0), sin(p w1), cos(p w0), cos(p w1)] with w_k = 1/10000^(k/2);
// the first half encodes the column, the second the row.
TEST(PosEmbedTest, MatchesReferenceFormula) {
  auto pe = SinCosPosEmbed2d(8, 2, 2, /*cls_token=*/false)[0];
  const double w[2] = {1.0, 1.0 / 100.0};
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int t = i * 2 + j;
      for (int k = 0; k < 2; ++k) {
        EXPECT_NEAR(pe[t][k].item<float>(), std::sin(j * w[k]), 1e-6) << t << "," << k;
        EXPECT_NEAR(pe[t][2 + k].item<float>(), std::cos(j * w[k]), 1e-6);
        EXPECT_NEAR(pe[t][4 + k].item<float>(), std::sin(i * w[k]), 1e-6);
        EXPECT_NEAR(pe[t][6 + k].item<float>(), std::cos(i * w[k]), 1e-6);
      }
    }
  }
}

TEST(PosEmbedTest, RejectsWidthNotMultipleOfFour) {
  EXPECT_THROW(SinCosPosEmbed2d(6, 2, 2, false), c10::Error);
}

}  // namespace
}  // namespace clmae
