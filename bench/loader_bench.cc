// clmae-bench-loader: how many images per second one CPU core prepares for
// ImageNet-style training, and so how many cores a GPU needs. Generates
// ImageNet-sized JPEGs (500x375, RGB, quality 90, smooth content with
// noise so that they compress like photographs), then on one thread decodes
// each (libjpeg-turbo) and applies the training transform
// (RandomResizedCrop to 224 with bicubic resampling, flip, normalise), as the
// data loader's workers do, and prints images/s per core, the split between
// decoding and the transform, and the cores needed for a GPU's rate.
//
//   clmae-bench-loader [--images 64] [--seconds 10] [--size 224]
//                      [--gpu-rate 1340] [--gpu-rate 677.9] [--save DIR]
//
// --save DIR writes the JPEGs there (0.jpg, 1.jpg, ...) so that
// bench/loader_baseline.py times the same files with Pillow
// (make bench-loader runs both).
//
// --gpu-rate (repeatable) is a training rate in images/s to size the cores
// for; the defaults are the target for CL-MAE ViT-B/16 on one H200
// (35% MFU) and the rate measured there (docs/benchmarks.md). The last line
// is a JSON record.

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/transforms.h"

namespace clmae {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "clmae-bench-loader: %s\n", what.c_str());
  return 1;
}

// A 3 x 375 x 500 uint8 image: a few smooth colour gradients and blobs plus
// pixel noise, so that the JPEG carries a photograph's amount of detail.
torch::Tensor SyntheticPhoto(int64_t seed) {
  torch::manual_seed(seed);
  const int64_t h = 375, w = 500;
  auto y = torch::linspace(0, 1, h).view({1, h, 1});
  auto x = torch::linspace(0, 1, w).view({1, 1, w});
  auto phase = torch::rand({3, 1, 1}) * 6.28;
  auto freq = 2 + torch::rand({3, 1, 1}) * 10;
  auto img = 0.5 + 0.25 * torch::sin(freq * x * 3.1 + phase) * torch::cos(freq * y * 2.3 - phase);
  namespace F = torch::nn::functional;
  auto blobs = F::interpolate(torch::randn({1, 3, h / 25 + 1, w / 25 + 1}),
                              F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{h, w})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
  img = img + 0.15 * blobs.squeeze(0);
  img = img + 0.04 * torch::randn({3, h, w});
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
}

int Main(int argc, char** argv) {
  int images = 64;
  double seconds = 10;
  int size = 224;
  std::vector<double> gpu_rates;
  std::string save_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--images" && i + 1 < argc) {
      images = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--size" && i + 1 < argc) {
      size = std::atoi(argv[++i]);
    } else if (a == "--gpu-rate" && i + 1 < argc) {
      gpu_rates.push_back(std::atof(argv[++i]));
    } else if (a == "--save" && i + 1 < argc) {
      save_dir = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: clmae-bench-loader [--images N] [--seconds S] [--size PX] "
                   "[--gpu-rate IMG_PER_S]... [--save DIR]\n");
      return 2;
    }
  }
  if (images < 1 || seconds <= 0 || size < 8) return Fail("--images, --seconds, --size: too small");
  if (gpu_rates.empty()) gpu_rates = {1340, 677.9};
  if (!ImageCodecAvailable(ImageFormat::kJpeg)) {
    return Fail("this build has no JPEG codec (libturbojpeg); nothing to measure");
  }
  torch::set_num_threads(1);  // one core, as one loader worker

  std::vector<std::string> jpegs;
  double jpeg_bytes = 0;
  for (int i = 0; i < images; ++i) {
    auto encoded = EncodeJpeg(SyntheticPhoto(i), /*quality=*/90);
    if (!encoded.ok()) return Fail(std::string(encoded.status().message()));
    jpeg_bytes += static_cast<double>(encoded->size());
    if (!save_dir.empty()) {
      std::filesystem::create_directories(save_dir);
      std::ofstream(absl::StrFormat("%s/%d.jpg", save_dir, i), std::ios::binary)
          .write(encoded->data(), static_cast<std::streamsize>(encoded->size()));
    }
    jpegs.push_back(*std::move(encoded));
  }

  TransformOptions t;
  t.kind = TransformOptions::Kind::kRandomResizedCrop;
  t.size = size;
  if (absl::Status valid = ValidateTransformOptions(t, 3); !valid.ok()) {
    return Fail(std::string(valid.message()));
  }
  SampleRng rng(0, 0);
  // Warm-up: one pass.
  for (const std::string& j : jpegs) {
    auto image = DecodeImage(j, 3, "bench");
    if (!image.ok()) return Fail(std::string(image.status().message()));
    (void)ApplyTransform(t, *image, rng);
  }
  int64_t done = 0;
  double decode_s = 0, transform_s = 0;
  const auto start = Clock::now();
  while (Seconds(start) < seconds) {
    const std::string& j = jpegs[done % jpegs.size()];
    const auto t0 = Clock::now();
    auto image = DecodeImage(j, 3, "bench");
    decode_s += Seconds(t0);
    if (!image.ok()) return Fail(std::string(image.status().message()));
    const auto t1 = Clock::now();
    torch::Tensor out = ApplyTransform(t, *image, rng);
    transform_s += Seconds(t1);
    if (out.size(1) != size) return Fail("the transform returned a wrong size");
    ++done;
  }
  const double wall = Seconds(start);
  const double per_core = done / wall;
  std::printf("%d JPEGs of 500x375 (mean %.0f KB), RandomResizedCrop to %d, one thread\n", images,
              jpeg_bytes / images / 1024, size);
  std::printf("images/s per core: %.1f (%.2f ms each: decode %.2f ms, transform %.2f ms)\n",
              per_core, 1e3 * wall / done, 1e3 * decode_s / done, 1e3 * transform_s / done);
  std::string rates_json;
  for (double rate : gpu_rates) {
    const double cores = rate / per_core;
    std::printf("for %.1f img/s per GPU: %.1f cores (%d whole)\n", rate, cores,
                static_cast<int>(std::ceil(cores)));
    rates_json += absl::StrFormat("%s{\"gpu_rate\":%.1f,\"cores\":%.2f}",
                                  rates_json.empty() ? "" : ",", rate, cores);
  }
  std::printf(
      "{\"images\":%d,\"jpeg_kb\":%.1f,\"size\":%d,\"per_core\":%.2f,\"decode_ms\":%.3f,"
      "\"transform_ms\":%.3f,\"rates\":[%s]}\n",
      images, jpeg_bytes / images / 1024, size, per_core, 1e3 * decode_s / done,
      1e3 * transform_s / done, rates_json.c_str());
  return 0;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) { return clmae::Main(argc, argv); }
