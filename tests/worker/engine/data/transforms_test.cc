#include "worker/engine/data/transforms.h"

#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "torch/torch.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
namespace F = torch::nn::functional;

torch::Tensor RandomImage(int c, int h, int w, int seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {c, h, w}, torch::kUInt8);
}

// Bicubic antialiased resize to s x s and normalisation, done independently.
torch::Tensor ResizeNormalize(const torch::Tensor& image, int s, const TransformOptions& o) {
  torch::Tensor x =
      F::interpolate(image.to(torch::kFloat32).unsqueeze(0), F::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{s, s})
                                                                 .mode(torch::kBicubic)
                                                                 .align_corners(false)
                                                                 .antialias(true))
          .squeeze(0)
          .clamp(0, 255);
  torch::Tensor mean = torch::tensor(o.mean, torch::kFloat64).to(torch::kFloat32).view({-1, 1, 1});
  torch::Tensor sd = torch::tensor(o.std, torch::kFloat64).to(torch::kFloat32).view({-1, 1, 1});
  return (x / 255 - mean) / sd;
}

TransformOptions NoCropJitter(int size) {
  TransformOptions o;
  o.size = size;
  o.scale_min = o.scale_max = 1.0;
  o.ratio_min = o.ratio_max = 1.0;
  o.hflip_prob = 0.0;
  return o;
}

TEST(SampleRngTest, DeterministicAndStreamsDiffer) {
  SampleRng a(7, 3), b(7, 3), c(7, 4), d(8, 3);
  std::set<uint64_t> seen;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextU64();
    EXPECT_EQ(x, b.NextU64());
    seen.insert(x);
    seen.insert(c.NextU64());
    seen.insert(d.NextU64());
  }
  EXPECT_EQ(seen.size(), 300u);
  SampleRng u(1, 1);
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    const double v = u.Uniform(2.0, 3.0);
    ASSERT_GE(v, 2.0);
    ASSERT_LT(v, 3.0);
    sum += v;
  }
  EXPECT_NEAR(sum / 10000, 2.5, 0.02);
}

TEST(TransformsTest, RandomResizedCropShapeAndDtype) {
  TransformOptions o;
  o.size = 32;
  SampleRng rng(0, 0);
  for (auto [h, w] : {std::pair{40, 60}, std::pair{17, 9}, std::pair{32, 32}}) {
    torch::Tensor y = ApplyTransform(o, RandomImage(3, h, w, 1), rng);
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 32, 32}));
    EXPECT_EQ(y.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(y.is_contiguous());
  }
}

TEST(TransformsTest, FullCropWithoutFlipIsPlainResize) {
  const TransformOptions o = NoCropJitter(16);
  const torch::Tensor image = RandomImage(3, 40, 40, 2);
  SampleRng rng(5, 5);
  torch::Tensor y = ApplyTransform(o, image, rng);
  EXPECT_TRUE(torch::allclose(y, ResizeNormalize(image, 16, o), 1e-5, 1e-5));
}

TEST(TransformsTest, FallbackIsCentreCropWithClampedRatio) {
  // Ratio 1 and scale 1 on a 30 x 50 image: no attempt fits, so torchvision
  // falls back to the centred 30 x 30 square (columns 10..39).
  const TransformOptions o = NoCropJitter(12);
  const torch::Tensor image = RandomImage(3, 30, 50, 3);
  SampleRng rng(1, 2);
  torch::Tensor y = ApplyTransform(o, image, rng);
  torch::Tensor centre = image.slice(2, 10, 40);
  EXPECT_TRUE(torch::allclose(y, ResizeNormalize(centre, 12, o), 1e-5, 1e-5));
}

TEST(TransformsTest, FlipFlips) {
  TransformOptions o = NoCropJitter(20);
  const torch::Tensor image = RandomImage(3, 20, 20, 4);
  o.hflip_prob = 1.0;
  SampleRng rng(0, 0);
  torch::Tensor flipped = ApplyTransform(o, image, rng);
  o.hflip_prob = 0.0;
  torch::Tensor plain = ApplyTransform(o, image, rng);
  EXPECT_FALSE(torch::allclose(flipped, plain));
  EXPECT_TRUE(torch::allclose(flipped, plain.flip({2})));
}

TEST(TransformsTest, FlipProbabilityIsRespected) {
  TransformOptions o = NoCropJitter(8);
  o.hflip_prob = 0.5;
  const torch::Tensor image = RandomImage(1, 8, 8, 5);
  o.mean = {0.5};
  o.std = {0.5};
  const torch::Tensor plain = ResizeNormalize(image, 8, o);
  int flips = 0;
  for (int i = 0; i < 400; ++i) {
    SampleRng rng(11, i);
    if (!torch::allclose(ApplyTransform(o, image, rng), plain, 1e-5, 1e-5)) ++flips;
  }
  EXPECT_GT(flips, 150);
  EXPECT_LT(flips, 250);
}

TEST(TransformsTest, SameRngSameOutputDifferentRngDifferentCrop) {
  TransformOptions o;
  o.size = 24;
  const torch::Tensor image = RandomImage(3, 64, 48, 6);
  SampleRng a(3, 99), b(3, 99), c(3, 100);
  torch::Tensor ya = ApplyTransform(o, image, a);
  EXPECT_TRUE(torch::equal(ya, ApplyTransform(o, image, b)));
  EXPECT_FALSE(torch::allclose(ya, ApplyTransform(o, image, c)));
}

TEST(TransformsTest, CropsCoverTheConfiguredScaleRange) {
  // With a constant image per column index, the output's column spread shows
  // the crop width: scale 0.2..1 must give both narrow and wide crops.
  TransformOptions o;
  o.size = 16;
  o.hflip_prob = 0;
  o.mean = {0.0};
  o.std = {1.0};
  torch::Tensor columns = torch::arange(200, torch::kInt64).remainder(256).to(torch::kUInt8);
  const torch::Tensor image = columns.view({1, 1, 200}).expand({1, 200, 200}).contiguous();
  double narrowest = 1e9, widest = 0;
  for (int i = 0; i < 200; ++i) {
    SampleRng rng(0, i);
    torch::Tensor y = ApplyTransform(o, image, rng) * 255;
    const double span = (y.max() - y.min()).item<double>();
    narrowest = std::min(narrowest, span);
    widest = std::max(widest, span);
  }
  // Narrowest crop: sqrt(0.2 * 3/4) * 200 ~ 77 columns; widest the full 200.
  EXPECT_LT(narrowest, 110);
  EXPECT_GT(widest, 170);
}

TEST(TransformsTest, EvalOfConstantImageIsHandNormalised) {
  TransformOptions o;
  o.kind = TransformOptions::Kind::kEval;
  o.size = 14;
  const torch::Tensor image = torch::full({3, 37, 23}, 128, torch::kUInt8);
  SampleRng rng(0, 0);
  torch::Tensor y = ApplyTransform(o, image, rng);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 14, 14}));
  for (int c = 0; c < 3; ++c) {
    const double expected = (128.0 / 255.0 - o.mean[c]) / o.std[c];
    EXPECT_NEAR(y[c].min().item<double>(), expected, 1e-5);
    EXPECT_NEAR(y[c].max().item<double>(), expected, 1e-5);
  }
}

TEST(TransformsTest, EvalIsDeterministicAndCentred) {
  TransformOptions o;
  o.kind = TransformOptions::Kind::kEval;
  o.size = 16;
  o.crop_fraction = 1.0;  // shorter side straight to 16: a pure centre crop
  const torch::Tensor image = RandomImage(3, 16, 30, 7);
  SampleRng a(1, 1), b(2, 2);
  torch::Tensor ya = ApplyTransform(o, image, a);
  EXPECT_TRUE(torch::equal(ya, ApplyTransform(o, image, b)));
  // Offset round((30 - 16) / 2) = 7.
  EXPECT_TRUE(torch::allclose(ya, ResizeNormalize(image.slice(2, 7, 23), 16, o), 1e-5, 1e-5));

  // 0.875: shorter side 16 / 0.875 = 18.29 -> 18, longer int(18 * 30 / 16) = 33.
  o.crop_fraction = 0.875;
  torch::Tensor resized =
      F::interpolate(image.to(torch::kFloat32).unsqueeze(0), F::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{18, 33})
                                                                 .mode(torch::kBicubic)
                                                                 .align_corners(false)
                                                                 .antialias(true))
          .squeeze(0)
          .clamp(0, 255);
  // Centre crop offsets: top round(1.0) = 1, left round(8.5) = 8 (half to even).
  torch::Tensor crop = resized.slice(1, 1, 17).slice(2, 8, 24);
  torch::Tensor mean = torch::tensor(o.mean).to(torch::kFloat32).view({3, 1, 1});
  torch::Tensor sd = torch::tensor(o.std).to(torch::kFloat32).view({3, 1, 1});
  EXPECT_TRUE(torch::allclose(ApplyTransform(o, image, a), (crop / 255 - mean) / sd, 1e-5, 1e-5));
}

TEST(TransformsTest, SingleChannelWithBroadcastMeanStd) {
  TransformOptions o = NoCropJitter(10);
  o.mean = {0.5};
  o.std = {0.25};
  const torch::Tensor image = torch::full({1, 10, 10}, 255, torch::kUInt8);
  SampleRng rng(0, 0);
  torch::Tensor y = ApplyTransform(o, image, rng);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 10, 10}));
  EXPECT_NEAR(y.min().item<double>(), 2.0, 1e-5);
  EXPECT_NEAR(y.max().item<double>(), 2.0, 1e-5);
}

TEST(TransformsTest, ValidateNamesTheField) {
  TransformOptions o;
  EXPECT_TRUE(ValidateTransformOptions(o, 3).ok());
  EXPECT_FALSE(ValidateTransformOptions(o, 1).ok());  // three means for one channel
  o.mean = {0.5};
  o.std = {0.5};
  EXPECT_TRUE(ValidateTransformOptions(o, 1).ok());

  auto message = [](TransformOptions t) {
    return std::string(ValidateTransformOptions(t, 3, "job.data.").message());
  };
  TransformOptions bad;
  bad.size = 0;
  EXPECT_THAT(message(bad), HasSubstr("job.data.size"));
  bad = TransformOptions();
  bad.scale_min = 0.0;
  EXPECT_THAT(message(bad), HasSubstr("scale_min"));
  bad = TransformOptions();
  bad.ratio_min = 2.0;
  EXPECT_THAT(message(bad), HasSubstr("ratio"));
  bad = TransformOptions();
  bad.hflip_prob = 1.5;
  EXPECT_THAT(message(bad), HasSubstr("hflip_prob"));
  bad = TransformOptions();
  bad.std = {0.2, 0.0, 0.2};
  EXPECT_THAT(message(bad), HasSubstr("std"));
  bad = TransformOptions();
  bad.mean = {0.1, 0.2};
  EXPECT_THAT(message(bad), HasSubstr("mean"));
  bad = TransformOptions();
  bad.kind = TransformOptions::Kind::kEval;
  bad.crop_fraction = 1.2;
  EXPECT_THAT(message(bad), HasSubstr("crop_fraction"));
}

}  // namespace
}  // namespace clmae
