#include "worker/engine/data/synthetic_dataset.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "torch/torch.h"
#include "worker/engine/data/dataset.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

SyntheticOptions Small() {
  SyntheticOptions o;
  o.size = 40;
  o.height = 20;
  o.width = 24;
  o.channels = 3;
  o.classes = 4;
  o.seed = 9;
  return o;
}

TEST(SyntheticDatasetTest, ShapesLabelsAndDeterminism) {
  auto dataset = SyntheticDataset::Create(Small());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->size(), 40);
  EXPECT_EQ((*dataset)->channels(), 3);
  EXPECT_EQ((*dataset)->num_classes(), 4);
  auto again = SyntheticDataset::Create(Small());
  for (int64_t i = 0; i < 40; ++i) {
    absl::StatusOr<Example> ex = (*dataset)->Get(i);
    ASSERT_TRUE(ex.ok()) << ex.status();
    EXPECT_EQ(ex->image.sizes(), (std::vector<int64_t>{3, 20, 24}));
    EXPECT_EQ(ex->image.scalar_type(), torch::kUInt8);
    EXPECT_EQ(ex->label, i % 4);
    EXPECT_TRUE(torch::equal(ex->image, (*again)->Get(i)->image)) << i;
  }
  // Different indices and seeds give different images.
  EXPECT_FALSE(torch::equal((*dataset)->Get(0)->image, (*dataset)->Get(4)->image));
  SyntheticOptions other = Small();
  other.seed = 10;
  EXPECT_FALSE(
      torch::equal((*dataset)->Get(0)->image, (*SyntheticDataset::Create(other))->Get(0)->image));
}

TEST(SyntheticDatasetTest, ImagesHaveStructureNotNoise) {
  auto dataset = SyntheticDataset::Create(Small());
  ASSERT_TRUE(dataset.ok());
  torch::Tensor x = (*dataset)->Get(1)->image.to(torch::kFloat32);
  // A shape on a background: a wide range of values overall...
  EXPECT_GT((x.max() - x.min()).item<float>(), 80.0f);
  // ...but neighbouring pixels mostly close (smooth, not white noise).
  const float neighbour = (x.slice(2, 1) - x.slice(2, 0, -1)).abs().mean().item<float>();
  EXPECT_LT(neighbour, 15.0f);
}

TEST(SyntheticDatasetTest, ClassesDifferOnAverage) {
  SyntheticOptions o = Small();
  o.size = 64;
  o.channels = 1;
  auto dataset = SyntheticDataset::Create(o);
  ASSERT_TRUE(dataset.ok());
  // Mean image per class: distinct classes give distinct means.
  std::vector<torch::Tensor> sums;
  for (int c = 0; c < 4; ++c) sums.push_back(torch::zeros({1, 20, 24}));
  for (int64_t i = 0; i < o.size; ++i) {
    absl::StatusOr<Example> ex = (*dataset)->Get(i);
    sums[ex->label] += ex->image.to(torch::kFloat32);
  }
  for (int a = 0; a < 4; ++a) {
    for (int b = a + 1; b < 4; ++b) {
      EXPECT_GT((sums[a] - sums[b]).abs().mean().item<float>() / 16, 3.0f) << a << " vs " << b;
    }
  }
}

TEST(SyntheticDatasetTest, UnlabelledAndOpenDataset) {
  DatasetOptions options;
  options.kind = DatasetOptions::Kind::kSynthetic;
  options.synthetic_size = 5;
  options.synthetic_classes = 0;
  options.channels = 1;
  auto dataset = OpenDataset(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_classes(), 0);
  EXPECT_EQ((*dataset)->Get(3)->label, -1);
  EXPECT_EQ((*dataset)->Get(3)->image.sizes(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ((*dataset)->Get(5).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(SyntheticDatasetTest, RejectsBadOptions) {
  SyntheticOptions o = Small();
  o.size = 0;
  EXPECT_THAT(SyntheticDataset::Create(o).status().message(), HasSubstr("synthetic_size"));
  o = Small();
  o.width = 0;
  EXPECT_EQ(SyntheticDataset::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Small();
  o.channels = 4;
  EXPECT_THAT(SyntheticDataset::Create(o).status().message(), HasSubstr("channels"));
}

}  // namespace
}  // namespace clmae
