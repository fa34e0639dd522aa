#include "worker/engine/data/image_folder_dataset.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "torch/torch.h"
#include "worker/engine/data/byte_io.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/data/image_codec.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A smooth uint8 [c, h, w] image, different for each `seed`.
torch::Tensor Smooth(int c, int h, int w, int seed) {
  torch::Tensor y = torch::arange(h, torch::kFloat32).view({1, h, 1});
  torch::Tensor x = torch::arange(w, torch::kFloat32).view({1, 1, w});
  torch::Tensor ch = torch::arange(c, torch::kFloat32).view({c, 1, 1});
  torch::Tensor v = 60 + 40 * torch::sin(x / 5.0 + seed) + 40 * torch::cos(y / 7.0 + ch) + 10 * ch;
  return v.clamp(0, 255).round().to(torch::kUInt8).contiguous();
}

class ImageFolderDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(tmp_.path().empty()); }

  // Writes `image` to root/<cls>/<name>, as PNG or JPEG by the extension.
  void Put(const std::string& cls, const std::string& name, const torch::Tensor& image) {
    ASSERT_TRUE(tmp_.MakeDir(cls));
    absl::StatusOr<std::string> bytes =
        FormatFromExtension(name) == ImageFormat::kPng ? EncodePng(image) : EncodeJpeg(image, 95);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    ASSERT_TRUE(WriteFileAtomically(tmp_.File(cls + "/" + name), *bytes).ok());
  }
  void PutBytes(const std::string& cls, const std::string& name, const std::string& bytes) {
    ASSERT_TRUE(tmp_.MakeDir(cls));
    ASSERT_TRUE(WriteFileAtomically(tmp_.File(cls + "/" + name), bytes).ok());
  }
  absl::StatusOr<std::unique_ptr<ImageFolderDataset>> Open(int channels) {
    return ImageFolderDataset::Open(tmp_.path(), channels);
  }

  ::clmae::testing::TempDir tmp_;
};

#define REQUIRE_CODEC(format) \
  if (!ImageCodecAvailable(format)) GTEST_SKIP() << "codec not built in"

TEST_F(ImageFolderDatasetTest, ClassesAndFilesInNameOrder) {
  REQUIRE_CODEC(ImageFormat::kPng);
  Put("zebra", "b.png", Smooth(3, 8, 8, 0));
  Put("zebra", "a.png", Smooth(3, 8, 8, 1));
  Put("apple", "x.png", Smooth(3, 8, 8, 2));
  Put("mango", "only.PNG", Smooth(3, 8, 8, 3));
  PutBytes("mango", "readme.txt", "not an image");
  PutBytes(".hidden", "h.png", "ignored");
  auto dataset = Open(3);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const ImageFolderDataset& d = **dataset;
  EXPECT_THAT(d.classes(), ElementsAre("apple", "mango", "zebra"));
  ASSERT_EQ(d.size(), 4);
  EXPECT_EQ(d.num_classes(), 3);
  EXPECT_THAT(d.path(0), HasSubstr("apple/x.png"));
  EXPECT_THAT(d.path(1), HasSubstr("mango/only.PNG"));
  EXPECT_THAT(d.path(2), HasSubstr("zebra/a.png"));
  EXPECT_THAT(d.path(3), HasSubstr("zebra/b.png"));
  std::vector<int64_t> labels;
  for (int i = 0; i < 4; ++i) labels.push_back(d.Get(i)->label);
  EXPECT_THAT(labels, ElementsAre(0, 1, 2, 2));
  // zebra/a.png was written from seed 1.
  EXPECT_TRUE(torch::equal(d.Get(2)->image, Smooth(3, 8, 8, 1)));
}

TEST_F(ImageFolderDatasetTest, PngRoundTripAndChannelConversion) {
  REQUIRE_CODEC(ImageFormat::kPng);
  const torch::Tensor rgb = Smooth(3, 6, 9, 4);
  const torch::Tensor grey = Smooth(1, 5, 7, 5);
  Put("a", "rgb.png", rgb);
  Put("a", "grey.png", grey);
  // Files sort as grey.png, rgb.png.
  auto three = Open(3);
  ASSERT_TRUE(three.ok()) << three.status();
  absl::StatusOr<Example> g3 = (*three)->Get(0);
  ASSERT_TRUE(g3.ok()) << g3.status();
  EXPECT_TRUE(torch::equal(g3->image, grey.expand({3, 5, 7})));
  EXPECT_TRUE(torch::equal((*three)->Get(1)->image, rgb));

  auto one = Open(1);
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(torch::equal((*one)->Get(0)->image, grey));
  // Luma as PIL's convert("L"): (19595 R + 38470 G + 7471 B + 32768) >> 16.
  torch::Tensor w = rgb.to(torch::kInt64);
  torch::Tensor expected =
      ((19595 * w[0] + 38470 * w[1] + 7471 * w[2] + 32768) / 65536).to(torch::kUInt8).unsqueeze(0);
  absl::StatusOr<Example> l = (*one)->Get(1);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->image.sizes(), (std::vector<int64_t>{1, 6, 9}));
  EXPECT_TRUE(torch::equal(l->image, expected));
}

TEST_F(ImageFolderDatasetTest, JpegDecodesCloseToTheOriginal) {
  REQUIRE_CODEC(ImageFormat::kJpeg);
  const torch::Tensor rgb = Smooth(3, 32, 40, 6);
  Put("a", "photo.jpg", rgb);
  Put("b", "photo.jpeg", Smooth(1, 16, 16, 7));
  auto dataset = Open(3);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  absl::StatusOr<Example> ex = (*dataset)->Get(0);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->image.sizes(), (std::vector<int64_t>{3, 32, 40}));
  const double mean_error =
      (ex->image.to(torch::kFloat32) - rgb.to(torch::kFloat32)).abs().mean().item<double>();
  EXPECT_LT(mean_error, 2.0);
  absl::StatusOr<Example> grey = (*dataset)->Get(1);
  ASSERT_TRUE(grey.ok());
  EXPECT_EQ(grey->image.sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_TRUE(torch::equal(grey->image[0], grey->image[2]));  // grey replicated
  EXPECT_EQ(grey->label, 1);

  auto one = Open(1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)->Get(0)->image.sizes(), (std::vector<int64_t>{1, 32, 40}));
}

TEST_F(ImageFolderDatasetTest, CorruptFileIsDataLossNamingIt) {
  REQUIRE_CODEC(ImageFormat::kPng);
  REQUIRE_CODEC(ImageFormat::kJpeg);
  Put("a", "good.png", Smooth(3, 4, 4, 0));
  PutBytes("a", "junk.png", "this is not a png");
  absl::StatusOr<std::string> png = EncodePng(Smooth(3, 16, 16, 1));
  ASSERT_TRUE(png.ok());
  PutBytes("a", "truncated.png", png->substr(0, png->size() / 2));
  PutBytes("a", "zzz.jpg", std::string("\xff\xd8\xff\xe0 broken", 11));
  auto dataset = Open(3);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ASSERT_EQ((*dataset)->size(), 4);
  EXPECT_TRUE((*dataset)->Get(0).ok());
  for (int i = 1; i < 4; ++i) {
    absl::StatusOr<Example> ex = (*dataset)->Get(i);
    EXPECT_EQ(ex.status().code(), absl::StatusCode::kDataLoss) << ex.status();
    EXPECT_THAT(ex.status().message(), HasSubstr((*dataset)->path(i)));
  }
}

TEST_F(ImageFolderDatasetTest, DeletedFileIsDataLoss) {
  REQUIRE_CODEC(ImageFormat::kPng);
  Put("a", "gone.png", Smooth(1, 4, 4, 0));
  auto dataset = Open(1);
  ASSERT_TRUE(dataset.ok());
  ASSERT_EQ(std::remove(tmp_.File("a/gone.png").c_str()), 0);
  absl::StatusOr<Example> ex = (*dataset)->Get(0);
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ex.status().message(), HasSubstr("gone.png"));
}

TEST_F(ImageFolderDatasetTest, EmptyOrMissingFolders) {
  auto dataset = Open(3);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr(tmp_.path()));

  PutBytes("empty_class", "notes.txt", "nothing");
  dataset = Open(3);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("empty_class"));

  const std::string missing = tmp_.File("missing");
  DatasetOptions options;
  options.kind = DatasetOptions::Kind::kImageFolder;
  options.path = missing;
  EXPECT_EQ(OpenDataset(options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(OpenDataset(options).status().message(), HasSubstr(missing));
}

TEST_F(ImageFolderDatasetTest, BadChannelCount) {
  auto dataset = Open(2);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("channels"));
}

TEST_F(ImageFolderDatasetTest, MissingCodecIsFailedPrecondition) {
  if (ImageCodecAvailable(ImageFormat::kPng) && ImageCodecAvailable(ImageFormat::kJpeg)) {
    GTEST_SKIP() << "both codecs built in";
  }
  const std::string name = ImageCodecAvailable(ImageFormat::kPng) ? "x.jpg" : "x.png";
  PutBytes("a", name, "whatever");
  auto dataset = Open(3);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dataset.status().message(), HasSubstr("built without"));
}

}  // namespace
}  // namespace clmae
