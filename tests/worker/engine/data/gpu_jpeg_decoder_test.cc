#include "worker/engine/data/gpu_jpeg_decoder.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "torch/cuda.h"
#include "torch/torch.h"
#include "worker/engine/data/data_loader.h"
#include "worker/engine/data/distributed_sampler.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_folder_dataset.h"
#include "worker/engine/data/synthetic_dataset.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

// Decoding on the GPU is checked against the host decoder (libjpeg-turbo):
// the two use different inverse DCTs and chroma upsampling, so pixels may
// differ by a few levels, never by much on average.
constexpr double kMeanTolerance = 1.0;  // mean |gpu - host|, in 0..255 levels
constexpr double kMaxTolerance = 24.0;  // largest |gpu - host| of any pixel

bool HaveGpuDecoder() { return GpuJpegDecoder::Available() && torch::cuda::is_available(); }

#define REQUIRE_GPU_DECODER()                                       \
  if (!HaveGpuDecoder()) {                                          \
    GTEST_SKIP() << (GpuJpegDecoder::Available() ? "no CUDA device" \
                                                 : "built without " \
                                                   "nvJPEG");       \
  }                                                                 \
  if (!ImageCodecAvailable(ImageFormat::kJpeg)) GTEST_SKIP() << "built without TurboJPEG"

// A 3 x h x w photograph-like image: smooth colour waves plus a little noise.
torch::Tensor Photo(int64_t h, int64_t w, int seed) {
  torch::manual_seed(seed);
  torch::Tensor y = torch::linspace(0, 1, h).view({1, h, 1});
  torch::Tensor x = torch::linspace(0, 1, w).view({1, 1, w});
  torch::Tensor phase = torch::rand({3, 1, 1}) * 6.28;
  torch::Tensor img = 0.5 + 0.3 * torch::sin(7 * x + phase) * torch::cos(5 * y - phase);
  img = img + 0.02 * torch::randn({3, h, w});
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
}

// Every batch of epochs first .. first + count - 1 of a loader over
// `dataset` (sampler seeded with options.seed); `skipped`, when given, gets
// the loader's count of undecodable images.
std::vector<Batch> LoadEpochs(std::shared_ptr<const Dataset> dataset,
                              const TransformOptions& transform, const DataLoaderOptions& options,
                              int64_t first, int64_t count, int64_t* skipped = nullptr) {
  DataLoader loader(dataset, DistributedSampler(dataset->size(), 0, 1, options.seed), transform,
                    options);
  std::vector<Batch> batches;
  for (int64_t epoch = first; epoch < first + count; ++epoch) {
    loader.StartEpoch(epoch);
    while (true) {
      auto next = loader.Next();
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok() || !next->has_value()) break;
      batches.push_back(std::move(**next));
    }
  }
  if (skipped != nullptr) *skipped = loader.skipped_images();
  return batches;
}

// What a loader over `dataset` with `options` answers for its first batch.
absl::Status FirstBatchStatus(std::shared_ptr<const Dataset> dataset,
                              const DataLoaderOptions& options) {
  TransformOptions transform;
  transform.size = 16;
  DataLoader loader(dataset, DistributedSampler(dataset->size(), 0, 1, 0), transform, options);
  loader.StartEpoch(0);
  return loader.Next().status();
}

void ExpectClose(const torch::Tensor& gpu, const torch::Tensor& host, const std::string& what) {
  ASSERT_TRUE(gpu.is_cuda()) << what;
  ASSERT_EQ(gpu.sizes(), host.sizes()) << what;
  ASSERT_EQ(gpu.scalar_type(), torch::kUInt8) << what;
  torch::Tensor diff = (gpu.cpu().to(torch::kFloat32) - host.to(torch::kFloat32)).abs();
  EXPECT_LE(diff.mean().item<double>(), kMeanTolerance) << what;
  EXPECT_LE(diff.max().item<double>(), kMaxTolerance) << what;
}

TEST(GpuJpegDecoderTest, RefusesACpuDevice) {
  absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> decoder = GpuJpegDecoder::Create(torch::kCPU);
  ASSERT_FALSE(decoder.ok());
  EXPECT_EQ(decoder.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(GpuJpegDecoderTest, WithoutCudaOrNvjpegSaysSo) {
  if (HaveGpuDecoder()) GTEST_SKIP() << "this machine can decode on the GPU";
  absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> decoder =
      GpuJpegDecoder::Create(torch::Device(torch::kCUDA, 0));
  ASSERT_FALSE(decoder.ok());
  EXPECT_EQ(decoder.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(decoder.status().message(), ::testing::AnyOf(HasSubstr("nvJPEG"), HasSubstr("CUDA")));
}

TEST(GpuJpegDecoderTest, MatchesTheHostDecoder) {
  REQUIRE_GPU_DECODER();
  auto decoder = GpuJpegDecoder::Create(torch::Device(torch::kCUDA, 0));
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  // ImageNet-like sizes, odd sizes, both chroma layouts.
  std::vector<EncodedExample> files;
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{375, 500}, {251, 333}, {64, 48}};
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (JpegChroma chroma : {JpegChroma::k444, JpegChroma::k420}) {
      auto jpeg =
          EncodeJpeg(Photo(sizes[i].first, sizes[i].second, static_cast<int>(i)), 90, chroma);
      ASSERT_TRUE(jpeg.ok()) << jpeg.status();
      files.push_back({*jpeg, absl::StrCat("photo", i, chroma == JpegChroma::k420 ? "-420" : ""),
                       static_cast<int64_t>(i)});
    }
  }
  for (int channels : {3, 1}) {
    std::vector<absl::StatusOr<torch::Tensor>> gpu = (*decoder)->Decode(files, channels);
    ASSERT_EQ(gpu.size(), files.size());
    for (size_t i = 0; i < files.size(); ++i) {
      ASSERT_TRUE(gpu[i].ok()) << files[i].what << ": " << gpu[i].status();
      auto host = DecodeImage(files[i].bytes, channels, files[i].what);
      ASSERT_TRUE(host.ok()) << host.status();
      ExpectClose(*gpu[i], *host, absl::StrCat(files[i].what, " as ", channels, " channels"));
    }
  }
  EXPECT_GT((*decoder)->decoded_on_device(), 0) << (*decoder)->backend();
}

TEST(GpuJpegDecoderTest, CorruptFileIsNamedAndTheRestDecode) {
  REQUIRE_GPU_DECODER();
  auto decoder = GpuJpegDecoder::Create(torch::Device(torch::kCUDA, 0));
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  auto good = EncodeJpeg(Photo(120, 160, 1), 90, JpegChroma::k420);
  ASSERT_TRUE(good.ok());
  // A JPEG signature, then not a JPEG.
  std::vector<EncodedExample> files = {{*good, "good-0.jpg", 0},
                                       {"\xff\xd8\xff\xe0 not really a jpeg", "bad.jpg", 1},
                                       {*good, "good-2.jpg", 2}};
  std::vector<absl::StatusOr<torch::Tensor>> out = (*decoder)->Decode(files, 3);
  ASSERT_EQ(out.size(), 3u);
  ASSERT_TRUE(out[0].ok()) << out[0].status();
  ASSERT_TRUE(out[2].ok()) << out[2].status();
  ASSERT_FALSE(out[1].ok());
  EXPECT_EQ(out[1].status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(out[1].status().message(), HasSubstr("bad.jpg"));
  auto host = DecodeImage(*good, 3, "good");
  ASSERT_TRUE(host.ok());
  ExpectClose(*out[0], *host, "good-0.jpg");
  ExpectClose(*out[2], *host, "good-2.jpg");
}

TEST(GpuJpegDecoderTest, PngAndGreyGoToTheHostDecoderExactly) {
  REQUIRE_GPU_DECODER();
  if (!ImageCodecAvailable(ImageFormat::kPng)) GTEST_SKIP() << "built without libpng";
  auto decoder = GpuJpegDecoder::Create(torch::Device(torch::kCUDA, 0));
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  auto png = EncodePng(Photo(40, 30, 2));
  auto grey = EncodeJpeg(Photo(40, 30, 3).narrow(0, 0, 1).contiguous(), 90);
  ASSERT_TRUE(png.ok() && grey.ok());
  std::vector<EncodedExample> files = {{*png, "a.png", 0}, {*grey, "grey.jpg", 1}};
  std::vector<absl::StatusOr<torch::Tensor>> out = (*decoder)->Decode(files, 3);
  ASSERT_EQ(out.size(), 2u);
  for (size_t i = 0; i < files.size(); ++i) {
    ASSERT_TRUE(out[i].ok()) << out[i].status();
    auto host = DecodeImage(files[i].bytes, 3, files[i].what);
    ASSERT_TRUE(host.ok());
    EXPECT_TRUE(torch::equal(out[i]->cpu(), *host)) << files[i].what;
  }
  EXPECT_EQ((*decoder)->decoded_on_host(), 2);
}

// The loader with decode_device CUDA against the same loader on the host:
// same samples, same augmentation (crop boxes and flips come from the same
// random streams), pixels within the decoders' tolerance after normalising.
TEST(GpuJpegDecoderTest, LoaderBatchesMatchTheHostLoader) {
  REQUIRE_GPU_DECODER();
  ::clmae::testing::TempDir dir;
  for (int c = 0; c < 2; ++c) {
    ASSERT_TRUE(dir.MakeDir(absl::StrCat("class", c)));
    for (int i = 0; i < 8; ++i) {
      auto jpeg = EncodeJpeg(Photo(120 + 8 * i, 160 - 4 * i, 10 * c + i), 90, JpegChroma::k420);
      ASSERT_TRUE(jpeg.ok());
      ASSERT_TRUE(
          WriteFileAtomically(dir.File(absl::StrCat("class", c, "/", i, ".jpg")), *jpeg).ok());
    }
  }
  auto folder = ImageFolderDataset::Open(dir.path(), 3);
  ASSERT_TRUE(folder.ok()) << folder.status();
  std::shared_ptr<const Dataset> dataset = std::move(*folder);
  TransformOptions transform;
  transform.size = 64;
  DataLoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  options.seed = 7;
  std::vector<Batch> host = LoadEpochs(dataset, transform, options, 1, 1);
  options.decode_device = torch::Device(torch::kCUDA, 0);
  std::vector<Batch> gpu = LoadEpochs(dataset, transform, options, 1, 1);
  ASSERT_EQ(host.size(), 4u);
  ASSERT_EQ(gpu.size(), host.size());
  for (size_t b = 0; b < host.size(); ++b) {
    EXPECT_TRUE(gpu[b].images.is_cuda());
    EXPECT_TRUE(torch::equal(gpu[b].indices, host[b].indices)) << "batch " << b;
    EXPECT_TRUE(torch::equal(gpu[b].labels, host[b].labels)) << "batch " << b;
    // One level of 255 is 1 / (255 * std) ~ 0.018 after normalising.
    torch::Tensor diff = (gpu[b].images.cpu() - host[b].images).abs();
    EXPECT_LE(diff.mean().item<double>(), kMeanTolerance * 0.02) << "batch " << b;
    EXPECT_LE(diff.max().item<double>(), kMaxTolerance * 0.02) << "batch " << b;
  }
}

// The batch path of the loader on the host: a decoder that decodes each file
// with the host codec, as nvJPEG's fallback does. The loader must give the
// very batches of its per-image path (same samples, same augmentation, same
// skipped files), whichever path decodes.
class HostBatchDecoder : public GpuJpegDecoder {
 public:
  std::vector<absl::StatusOr<torch::Tensor>> Decode(const std::vector<EncodedExample>& images,
                                                    int channels) override {
    ++calls;
    largest = std::max(largest.load(), images.size());
    std::vector<absl::StatusOr<torch::Tensor>> out;
    for (const EncodedExample& e : images) out.push_back(DecodeImage(e.bytes, channels, e.what));
    decoded += static_cast<int64_t>(images.size());
    return out;
  }
  std::string backend() const override { return "host"; }
  torch::Device device() const override { return torch::kCPU; }
  int64_t decoded_on_device() const override { return decoded; }
  int64_t decoded_on_host() const override { return 0; }

  std::atomic<int> calls{0};
  std::atomic<size_t> largest{0};
  std::atomic<int64_t> decoded{0};
};

TEST(GpuJpegDecoderTest, TheLoadersBatchPathGivesThePerImagePathsBatches) {
  if (!ImageCodecAvailable(ImageFormat::kPng)) GTEST_SKIP() << "built without libpng";
  ::clmae::testing::TempDir dir;
  for (int c = 0; c < 2; ++c) {
    ASSERT_TRUE(dir.MakeDir(absl::StrCat("class", c)));
    for (int i = 0; i < 9; ++i) {
      auto png = EncodePng(Photo(20 + i, 24 - i, 10 * c + i));
      ASSERT_TRUE(png.ok());
      ASSERT_TRUE(
          WriteFileAtomically(dir.File(absl::StrCat("class", c, "/", i, ".png")), *png).ok());
    }
  }
  // Undecodable: skipped and counted by both paths.
  ASSERT_TRUE(WriteFileAtomically(dir.File("class1/broken.png"), "not a png").ok());
  auto folder = ImageFolderDataset::Open(dir.path(), 3);
  ASSERT_TRUE(folder.ok()) << folder.status();
  std::shared_ptr<const Dataset> dataset = std::move(*folder);
  TransformOptions transform;
  transform.size = 16;
  auto decoder = std::make_shared<HostBatchDecoder>();
  DataLoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  options.seed = 5;
  int64_t skipped_per_image = 0, skipped_batched = 0;
  std::vector<Batch> per_image = LoadEpochs(dataset, transform, options, 0, 3, &skipped_per_image);
  options.batch_decoder = decoder;
  std::vector<Batch> batched = LoadEpochs(dataset, transform, options, 0, 3, &skipped_batched);
  ASSERT_EQ(per_image.size(), 12u);  // 19 files, batches of 4, 3 epochs
  ASSERT_EQ(batched.size(), per_image.size());
  EXPECT_GT(skipped_per_image, 0);
  EXPECT_EQ(skipped_batched, skipped_per_image);
  for (size_t b = 0; b < per_image.size(); ++b) {
    EXPECT_TRUE(torch::equal(batched[b].indices, per_image[b].indices)) << "batch " << b;
    EXPECT_TRUE(torch::equal(batched[b].labels, per_image[b].labels)) << "batch " << b;
    EXPECT_TRUE(torch::equal(batched[b].images, per_image[b].images)) << "batch " << b;
  }
  EXPECT_EQ(decoder->calls.load(), 12);
  EXPECT_EQ(decoder->largest.load(), 4u);
}

TEST(GpuJpegDecoderTest, LoaderRefusesGpuDecodingOfDataWithoutFiles) {
  SyntheticOptions synthetic;
  synthetic.size = 16;
  auto dataset = SyntheticDataset::Create(synthetic);
  ASSERT_TRUE(dataset.ok());
  DataLoaderOptions options;
  options.batch_size = 4;
  options.decode_device = torch::Device(torch::kCUDA, 0);
  const absl::Status status = FirstBatchStatus(std::move(*dataset), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("data.decode GPU reads image files"));
}

TEST(GpuJpegDecoderTest, LoaderWithoutAGpuDecoderFailsClearly) {
  if (HaveGpuDecoder()) GTEST_SKIP() << "this machine can decode on the GPU";
  ::clmae::testing::TempDir dir;
  ASSERT_TRUE(dir.MakeDir("a"));
  auto png = EncodePng(Photo(16, 16, 0));
  ASSERT_TRUE(png.ok());
  ASSERT_TRUE(WriteFileAtomically(dir.File("a/0.png"), *png).ok());
  auto folder = ImageFolderDataset::Open(dir.path(), 3);
  ASSERT_TRUE(folder.ok()) << folder.status();
  DataLoaderOptions options;
  options.batch_size = 1;
  options.decode_device = torch::Device(torch::kCUDA, 0);
  const absl::Status status = FirstBatchStatus(std::move(*folder), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("data.decode GPU"));
}

}  // namespace
}  // namespace clmae
