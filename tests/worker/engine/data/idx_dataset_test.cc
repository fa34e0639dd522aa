#include "worker/engine/data/idx_dataset.h"

#include <unistd.h>

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

namespace clmae {
namespace {

using ::testing::HasSubstr;

std::string BigEndian32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

// IDX bytes for `n` images of h x w where pixel (i, y, x) = (i * 31 + y * w + x) % 256.
std::string ImagesIdx(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 0x803) {
  std::string out = BigEndian32(magic) + BigEndian32(n) + BigEndian32(h) + BigEndian32(w);
  for (uint32_t i = 0; i < n; ++i) {
    for (uint32_t p = 0; p < h * w; ++p) out.push_back(static_cast<char>((i * 31 + p) % 256));
  }
  return out;
}

std::string LabelsIdx(uint32_t n, uint32_t magic = 0x801) {
  std::string out = BigEndian32(magic) + BigEndian32(n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(static_cast<char>((i * 3) % 10));
  return out;
}

class IdxDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(tmp_.path().empty()); }

  void Write(const std::string& name, const std::string& bytes) {
    ASSERT_TRUE(WriteFileAtomically(tmp_.File(name), bytes).ok());
  }
  void WriteGz(const std::string& name, const std::string& bytes) {
    absl::StatusOr<std::string> gz = GzipBytes(bytes);
    ASSERT_TRUE(gz.ok()) << gz.status();
    Write(name, *gz);
  }

  ::clmae::testing::TempDir tmp_;
  const std::string& dir() const { return tmp_.path(); }
};

void ExpectRoundTrip(const Dataset& dataset, int n, int h, int w) {
  ASSERT_EQ(dataset.size(), n);
  EXPECT_EQ(dataset.channels(), 1);
  EXPECT_EQ(dataset.num_classes(), 10);  // labels reach 9
  for (int i : {0, 1, n - 1}) {
    absl::StatusOr<Example> ex = dataset.Get(i);
    ASSERT_TRUE(ex.ok()) << ex.status();
    ASSERT_EQ(ex->image.sizes(), (std::vector<int64_t>{1, h, w}));
    EXPECT_EQ(ex->image.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(ex->image.is_contiguous());
    for (int p : {0, 5, h * w - 1}) {
      EXPECT_EQ(ex->image.view(-1)[p].item<int>(), (i * 31 + p) % 256) << "image " << i;
    }
    EXPECT_EQ(ex->label, (i * 3) % 10);
  }
}

TEST_F(IdxDatasetTest, ReadsRawFiles) {
  Write("train-images-idx3-ubyte", ImagesIdx(7, 4, 5));
  Write("train-labels-idx1-ubyte", LabelsIdx(7));
  auto dataset = IdxDataset::Open(dir(), "train");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ExpectRoundTrip(**dataset, 7, 4, 5);
  EXPECT_THAT((*dataset)->Describe(), HasSubstr("train-images-idx3-ubyte"));
}

TEST_F(IdxDatasetTest, ReadsGzipTestSplitThroughOpenDataset) {
  if (!GzipAvailable()) GTEST_SKIP() << "built without zlib";
  WriteGz("t10k-images-idx3-ubyte.gz", ImagesIdx(12, 3, 3));
  WriteGz("t10k-labels-idx1-ubyte.gz", LabelsIdx(12));
  DatasetOptions options;
  options.kind = DatasetOptions::Kind::kIdx;
  options.path = dir();
  options.split = "test";
  auto dataset = OpenDataset(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ExpectRoundTrip(**dataset, 12, 3, 3);
}

TEST_F(IdxDatasetTest, GzipWithoutZlibIsFailedPrecondition) {
  if (GzipAvailable()) GTEST_SKIP() << "built with zlib";
  // Gzip magic followed by junk: without zlib the reader must say so.
  Write("train-images-idx3-ubyte.gz", std::string("\x1f\x8b\x08junk", 7));
  Write("train-labels-idx1-ubyte", LabelsIdx(1));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dataset.status().message(), HasSubstr("zlib"));
}

TEST_F(IdxDatasetTest, CorruptGzipIsDataLoss) {
  if (!GzipAvailable()) GTEST_SKIP() << "built without zlib";
  absl::StatusOr<std::string> gz = GzipBytes(ImagesIdx(4, 2, 2));
  ASSERT_TRUE(gz.ok());
  Write("train-images-idx3-ubyte.gz", gz->substr(0, gz->size() / 2));
  Write("train-labels-idx1-ubyte", LabelsIdx(4));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(dataset.status().message(), HasSubstr("train-images-idx3-ubyte.gz"));
}

TEST_F(IdxDatasetTest, BadMagicIsInvalidArgument) {
  Write("train-images-idx3-ubyte", ImagesIdx(2, 2, 2, /*magic=*/0x0D03));
  Write("train-labels-idx1-ubyte", LabelsIdx(2));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("magic"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("train-images-idx3-ubyte"));

  Write("train-images-idx3-ubyte", ImagesIdx(2, 2, 2));
  Write("train-labels-idx1-ubyte", LabelsIdx(2, /*magic=*/0x803));
  dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("train-labels-idx1-ubyte"));
}

TEST_F(IdxDatasetTest, CountMismatchIsInvalidArgument) {
  Write("train-images-idx3-ubyte", ImagesIdx(5, 2, 2));
  Write("train-labels-idx1-ubyte", LabelsIdx(4));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("5 images"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("4 labels"));
}

TEST_F(IdxDatasetTest, TruncatedDataIsInvalidArgument) {
  std::string images = ImagesIdx(3, 4, 4);
  images.pop_back();
  Write("train-images-idx3-ubyte", images);
  Write("train-labels-idx1-ubyte", LabelsIdx(3));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("47"));
}

TEST_F(IdxDatasetTest, MissingFileIsNotFoundNamingThePath) {
  Write("train-images-idx3-ubyte", ImagesIdx(2, 2, 2));
  auto dataset = IdxDataset::Open(dir(), "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(), HasSubstr(tmp_.File("train-labels-idx1-ubyte")));

  const std::string missing_dir = tmp_.File("nowhere");
  dataset = IdxDataset::Open(missing_dir, "train");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(), HasSubstr(missing_dir));
}

TEST_F(IdxDatasetTest, UnknownSplitIsInvalidArgument) {
  auto dataset = IdxDataset::Open(dir(), "validation");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("validation"));
}

TEST_F(IdxDatasetTest, OutOfRangeIndex) {
  Write("train-images-idx3-ubyte", ImagesIdx(2, 2, 2));
  Write("train-labels-idx1-ubyte", LabelsIdx(2));
  auto dataset = IdxDataset::Open(dir(), "train");
  ASSERT_TRUE(dataset.ok());
  EXPECT_EQ((*dataset)->Get(2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*dataset)->Get(-1).status().code(), absl::StatusCode::kOutOfRange);
}

// The Fashion-MNIST files Debian installs (package fashion-mnist), when present.
TEST(IdxDatasetFashionMnistTest, ReadsDebianFiles) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (access((dir + "/train-images-idx3-ubyte.gz").c_str(), R_OK) != 0 &&
      access((dir + "/train-images-idx3-ubyte").c_str(), R_OK) != 0) {
    GTEST_SKIP() << dir << " not installed";
  }
  if (!GzipAvailable()) GTEST_SKIP() << "built without zlib";
  for (const auto& [split, count] : {std::pair{"train", 60000}, std::pair{"test", 10000}}) {
    auto dataset = IdxDataset::Open(dir, split);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    EXPECT_EQ((*dataset)->size(), count) << split;
    EXPECT_EQ((*dataset)->num_classes(), 10);
    std::vector<int> per_class(10, 0);
    for (int64_t i = 0; i < (*dataset)->size(); i += 97) {
      absl::StatusOr<Example> ex = (*dataset)->Get(i);
      ASSERT_TRUE(ex.ok());
      ASSERT_EQ(ex->image.sizes(), (std::vector<int64_t>{1, 28, 28}));
      ASSERT_GE(ex->label, 0);
      ASSERT_LE(ex->label, 9);
      ++per_class[ex->label];
    }
    for (int c = 0; c < 10; ++c) EXPECT_GT(per_class[c], 0) << "class " << c;
    // Real images: not blank.
    absl::StatusOr<Example> first = (*dataset)->Get(0);
    EXPECT_GT(first->image.max().item<int>(), 100);
  }
}

}  // namespace
}  // namespace clmae
