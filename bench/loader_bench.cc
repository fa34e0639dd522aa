// clmae-bench-loader: how many images per second one CPU core prepares for
// ImageNet-style training, and so how many cores a GPU needs. Generates
// ImageNet-sized JPEGs (500x375, RGB, quality 90, 4:2:0 chroma as ImageNet's
// files have, smooth content with noise so that they compress like
// photographs), then on one thread decodes each (libjpeg-turbo) and applies
// the training transform (RandomResizedCrop to 224 with bicubic resampling,
// flip, normalise), as the data loader's workers do, and prints images/s per
// core, the split between decoding and the transform, and the cores needed
// for a GPU's rate.
//
//   clmae-bench-loader [--images 64] [--seconds 10] [--size 224]
//                      [--chroma 420|444] [--gpu-rate 1340] [--gpu-rate 677.9]
//                      [--save DIR] [--check-gpu-decode]
//                      [--loader cpu|cuda]... [--workers 4] [--batch 64]
//
// --save DIR writes the JPEGs there (0.jpg, 1.jpg, ...) so that
// bench/loader_baseline.py times the same files with Pillow
// (make bench-loader runs both).
//
// --gpu-rate (repeatable) is a training rate in images/s to size the cores
// for; the defaults are the target for CL-MAE ViT-B/16 on one H200
// (35% MFU) and the rate measured there (docs/benchmarks.md).
//
// --check-gpu-decode (needs CUDA and nvJPEG) first checks decoding on the GPU
// against the host decoder, image by image (both chroma layouts, 3 and 1
// channels) and as whole loader batches (same samples, same augmentation),
// within JPEG-decoder tolerance; it exits 1 when they differ by more.
//
// --loader DEVICE (repeatable) then runs the data loader itself over the
// JPEGs as an ImageFolder (--workers threads, --batch images a batch),
// decoding on the host (cpu) or on the GPU with nvJPEG (cuda), and reports
// images/s and the process's host CPU time per image: the cores a GPU needs
// with each. The last line is a JSON record.

#include <sys/resource.h>
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

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/testing/temp_dir.h"
#include "torch/cuda.h"
#include "worker/engine/data/data_loader.h"
#include "worker/engine/data/distributed_sampler.h"
#include "worker/engine/data/gpu_jpeg_decoder.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_folder_dataset.h"
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

// Seconds of CPU time (user + system) this process has used.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// Decoding on the GPU is held to the host decoder within what two JPEG
// decoders (different inverse DCTs and chroma upsampling) differ by.
constexpr double kMeanTolerance = 1.0;  // mean |gpu - host| in 0..255 levels
constexpr double kMaxTolerance = 24.0;  // largest |gpu - host| of one pixel

struct Difference {
  double mean = 0, max = 0;
  bool ok() const { return mean <= kMeanTolerance && max <= kMaxTolerance; }
};

Difference Compare(const torch::Tensor& gpu, const torch::Tensor& host, double scale = 1.0) {
  torch::Tensor diff = (gpu.cpu().to(torch::kFloat32) - host.to(torch::kFloat32)).abs() / scale;
  return {diff.mean().item<double>(), diff.max().item<double>()};
}

// Writes `jpegs` as an ImageFolder under `root` (one class, `count` files,
// cycling through them) and opens it.
absl::StatusOr<std::shared_ptr<const Dataset>> JpegFolder(const std::string& root,
                                                          const std::vector<std::string>& jpegs,
                                                          int count) {
  std::filesystem::create_directories(root + "/photos");
  for (int i = 0; i < count; ++i) {
    const std::string& j = jpegs[i % jpegs.size()];
    std::ofstream(absl::StrFormat("%s/photos/%05d.jpg", root, i), std::ios::binary)
        .write(j.data(), static_cast<std::streamsize>(j.size()));
  }
  auto folder = ImageFolderDataset::Open(root, 3);
  if (!folder.ok()) return folder.status();
  return std::shared_ptr<const Dataset>(std::move(*folder));
}

// Every batch of one epoch, decoded on `device`.
absl::StatusOr<std::vector<Batch>> LoadEpoch(std::shared_ptr<const Dataset> dataset,
                                             const TransformOptions& t, torch::Device device,
                                             int batch) {
  DataLoaderOptions o;
  o.batch_size = batch;
  o.num_workers = 2;
  o.seed = 3;
  o.decode_device = device;
  DataLoader loader(dataset, DistributedSampler(dataset->size(), 0, 1, 3), t, o);
  loader.StartEpoch(0);
  std::vector<Batch> out;
  while (true) {
    auto next = loader.Next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return out;
    out.push_back(std::move(**next));
  }
}

// --check-gpu-decode: 0 when the GPU path matches the host path.
int CheckGpuDecode(const std::vector<torch::Tensor>& photos, const TransformOptions& t) {
  auto decoder = GpuJpegDecoder::Create(torch::Device(torch::kCUDA, 0));
  if (!decoder.ok()) return Fail(absl::StrCat("--check-gpu-decode: ", decoder.status().message()));
  std::printf("GPU decoding: nvJPEG, %s backend; tolerance mean <= %.1f, max <= %.0f levels\n",
              (*decoder)->backend().c_str(), kMeanTolerance, kMaxTolerance);
  bool all_ok = true;
  for (JpegChroma chroma : {JpegChroma::k420, JpegChroma::k444}) {
    std::vector<EncodedExample> files;
    for (size_t i = 0; i < photos.size(); ++i) {
      auto jpeg = EncodeJpeg(photos[i], 90, chroma);
      if (!jpeg.ok()) return Fail(std::string(jpeg.status().message()));
      files.push_back({*std::move(jpeg), absl::StrCat("photo ", i), 0});
    }
    for (int channels : {3, 1}) {
      std::vector<absl::StatusOr<torch::Tensor>> gpu = (*decoder)->Decode(files, channels);
      Difference worst;
      for (size_t i = 0; i < files.size(); ++i) {
        auto host = DecodeImage(files[i].bytes, channels, files[i].what);
        if (!gpu[i].ok() || !host.ok()) {
          return Fail(absl::StrCat(files[i].what, ": ",
                                   (gpu[i].ok() ? host.status() : gpu[i].status()).message()));
        }
        const Difference d = Compare(*gpu[i], *host);
        worst.mean = std::max(worst.mean, d.mean);
        worst.max = std::max(worst.max, d.max);
      }
      std::printf("decode %s, %d channel(s), %zu images: worst mean |diff| %.3f, max %.0f  %s\n",
                  chroma == JpegChroma::k420 ? "4:2:0" : "4:4:4", channels, files.size(),
                  worst.mean, worst.max, worst.ok() ? "PASS" : "FAIL");
      all_ok = all_ok && worst.ok();
    }
  }
  std::printf("decoded on the GPU: %lld, on the host instead: %lld\n",
              static_cast<long long>((*decoder)->decoded_on_device()),
              static_cast<long long>((*decoder)->decoded_on_host()));
  // Whole loader batches: same samples and augmentation, pixels within the
  // tolerance (one level is 1 / (255 std) after normalising; std >= 0.224).
  ::clmae::testing::TempDir dir;
  std::vector<std::string> jpegs;
  for (const torch::Tensor& p : photos) {
    auto jpeg = EncodeJpeg(p, 90, JpegChroma::k420);
    if (!jpeg.ok()) return Fail(std::string(jpeg.status().message()));
    jpegs.push_back(*std::move(jpeg));
  }
  auto dataset = JpegFolder(dir.path(), jpegs, 32);
  if (!dataset.ok()) return Fail(std::string(dataset.status().message()));
  auto host = LoadEpoch(*dataset, t, torch::kCPU, 8);
  auto gpu = LoadEpoch(*dataset, t, torch::Device(torch::kCUDA, 0), 8);
  if (!host.ok() || !gpu.ok()) {
    return Fail(std::string((host.ok() ? gpu.status() : host.status()).message()));
  }
  bool same_samples = host->size() == gpu->size();
  Difference worst;
  for (size_t b = 0; same_samples && b < host->size(); ++b) {
    same_samples = torch::equal((*host)[b].indices, (*gpu)[b].indices);
    const Difference d = Compare((*gpu)[b].images, (*host)[b].images, 1.0 / (255 * 0.224));
    worst.mean = std::max(worst.mean, d.mean);
    worst.max = std::max(worst.max, d.max);
  }
  const bool loader_ok = same_samples && worst.ok();
  std::printf(
      "loader batches, GPU vs host: %zu batches, same samples %s, worst mean |diff| %.3f, "
      "max %.0f levels  %s\n",
      host->size(), same_samples ? "yes" : "NO", worst.mean, worst.max,
      loader_ok ? "PASS" : "FAIL");
  all_ok = all_ok && loader_ok;
  std::printf("GPU decode check: %s\n", all_ok ? "PASS" : "FAIL");
  return all_ok ? 0 : 1;
}

struct LoaderFigures {
  double images_per_s = 0;
  double cpu_ms_per_image = 0;
};

// --loader: the data loader over `dataset` for `seconds`, on `device`.
absl::StatusOr<LoaderFigures> TimeLoader(std::shared_ptr<const Dataset> dataset,
                                         const TransformOptions& t, torch::Device device,
                                         int workers, int batch, double seconds) {
  DataLoaderOptions o;
  o.batch_size = batch;
  o.num_workers = workers;
  o.prefetch = 4;
  o.decode_device = device;
  // As the trainer on a GPU: host batches page-locked where CUDA is present.
  o.pin_memory = true;
  DataLoader loader(dataset, DistributedSampler(dataset->size(), 0, 1, 0), t, o);
  int64_t images = 0;
  // One epoch of warm-up (thread start, nvJPEG's buffers), then timed epochs.
  double cpu0 = 0;
  Clock::time_point start;
  for (int64_t epoch = 0;; ++epoch) {
    if (epoch == 1) {
      cpu0 = ProcessCpuSeconds();
      start = Clock::now();
      images = 0;
    }
    loader.StartEpoch(epoch);
    while (true) {
      auto next = loader.Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) break;
      images += (**next).images.size(0);
    }
    if (epoch >= 1 && Seconds(start) >= seconds) break;
  }
  const double wall = Seconds(start);
  return LoaderFigures{images / wall, 1e3 * (ProcessCpuSeconds() - cpu0) / images};
}

int Main(int argc, char** argv) {
  int images = 64;
  double seconds = 10;
  int size = 224;
  std::vector<double> gpu_rates;
  std::string save_dir;
  JpegChroma chroma = JpegChroma::k420;
  bool check_gpu_decode = false;
  std::vector<std::string> loader_devices;
  int workers = 4;
  int batch = 64;
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
    } else if (a == "--chroma" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "420" || std::string(argv[i + 1]) == "444")) {
      chroma = std::string(argv[++i]) == "420" ? JpegChroma::k420 : JpegChroma::k444;
    } else if (a == "--check-gpu-decode") {
      check_gpu_decode = true;
    } else if (a == "--loader" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "cpu" || std::string(argv[i + 1]) == "cuda")) {
      loader_devices.push_back(argv[++i]);
    } else if (a == "--workers" && i + 1 < argc) {
      workers = std::atoi(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: clmae-bench-loader [--images N] [--seconds S] [--size PX] "
                   "[--chroma 420|444] [--gpu-rate IMG_PER_S]... [--save DIR] "
                   "[--check-gpu-decode] [--loader cpu|cuda]... [--workers N] [--batch N]\n");
      return 2;
    }
  }
  if (images < 1 || seconds <= 0 || size < 8 || workers < 0 || batch < 1) {
    return Fail("--images, --seconds, --size, --workers, --batch: out of range");
  }
  if (gpu_rates.empty()) gpu_rates = {1340, 677.9};
  if (!ImageCodecAvailable(ImageFormat::kJpeg)) {
    return Fail("this build has no JPEG codec (libturbojpeg); nothing to measure");
  }
  torch::set_num_threads(1);  // one core, as one loader worker

  std::vector<torch::Tensor> photos;
  for (int i = 0; i < images; ++i) photos.push_back(SyntheticPhoto(i));
  TransformOptions t;
  t.kind = TransformOptions::Kind::kRandomResizedCrop;
  t.size = size;
  if (absl::Status valid = ValidateTransformOptions(t, 3); !valid.ok()) {
    return Fail(std::string(valid.message()));
  }
  if (check_gpu_decode) {
    if (const int rc = CheckGpuDecode(photos, t); rc != 0) return rc;
  }

  std::vector<std::string> jpegs;
  double jpeg_bytes = 0;
  for (int i = 0; i < images; ++i) {
    auto encoded = EncodeJpeg(photos[i], /*quality=*/90, chroma);
    if (!encoded.ok()) return Fail(std::string(encoded.status().message()));
    jpeg_bytes += static_cast<double>(encoded->size());
    if (!save_dir.empty()) {
      std::filesystem::create_directories(save_dir);
      std::ofstream(absl::StrFormat("%s/%d.jpg", save_dir, i), std::ios::binary)
          .write(encoded->data(), static_cast<std::streamsize>(encoded->size()));
    }
    jpegs.push_back(*std::move(encoded));
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
  const char* chroma_name = chroma == JpegChroma::k420 ? "4:2:0" : "4:4:4";
  std::printf("%d JPEGs of 500x375 %s (mean %.0f KB), RandomResizedCrop to %d, one thread\n",
              images, chroma_name, jpeg_bytes / images / 1024, size);
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
  // The loader itself, decoding on the host or on the GPU.
  std::string loaders_json;
  if (!loader_devices.empty()) {
    ::clmae::testing::TempDir dir;
    auto dataset = JpegFolder(dir.path(), jpegs, std::max(images, 8 * batch));
    if (!dataset.ok()) return Fail(std::string(dataset.status().message()));
    torch::set_num_threads(workers > 0 ? workers : 1);
    for (const std::string& name : loader_devices) {
      const torch::Device device =
          name == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
      auto figures = TimeLoader(*dataset, t, device, workers, batch, seconds);
      if (!figures.ok())
        return Fail(absl::StrCat("--loader ", name, ": ", figures.status().message()));
      std::printf(
          "loader, decode on %s, %d workers, batch %d: %.1f img/s, host CPU %.2f ms/image\n",
          name.c_str(), workers, batch, figures->images_per_s, figures->cpu_ms_per_image);
      std::string cores_json;
      for (double rate : gpu_rates) {
        const double cores = rate * figures->cpu_ms_per_image / 1e3;
        std::printf("  for %.1f img/s per GPU: %.1f host cores\n", rate, cores);
        cores_json += absl::StrFormat("%s{\"gpu_rate\":%.1f,\"cores\":%.2f}",
                                      cores_json.empty() ? "" : ",", rate, cores);
      }
      loaders_json += absl::StrFormat(
          "%s{\"device\":\"%s\",\"workers\":%d,\"batch\":%d,\"images_per_s\":%.1f,"
          "\"cpu_ms_per_image\":%.3f,\"rates\":[%s]}",
          loaders_json.empty() ? "" : ",", name, workers, batch, figures->images_per_s,
          figures->cpu_ms_per_image, cores_json);
    }
  }
  std::printf(
      "{\"images\":%d,\"chroma\":\"%s\",\"jpeg_kb\":%.1f,\"size\":%d,\"per_core\":%.2f,"
      "\"decode_ms\":%.3f,\"transform_ms\":%.3f,\"rates\":[%s],\"loaders\":[%s]}\n",
      images, chroma_name, jpeg_bytes / images / 1024, size, per_core, 1e3 * decode_s / done,
      1e3 * transform_s / done, rates_json.c_str(), loaders_json.c_str());
  return 0;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) { return clmae::Main(argc, argv); }
