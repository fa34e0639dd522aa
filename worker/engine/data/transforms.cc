#include "worker/engine/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "torch/nn/functional/upsampling.h"
#include "torch/torch.h"

namespace clmae {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
constexpr int kMaxSize = 4096;

// splitmix64's output function (Steele, Lea, Flood 2014).
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform integer in [0, n), n >= 1 (Lemire's multiply-shift; the bias is
// below 2^-40 for any n we use).
int64_t UniformInt(SampleRng& rng, int64_t n) {
  return static_cast<int64_t>(
      (static_cast<unsigned __int128>(rng.NextU64()) * static_cast<uint64_t>(n)) >> 64);
}

// Python's round(): half to even, which is nearbyint's default mode.
int64_t RoundHalfEven(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

struct CropBox {
  int64_t top, left, height, width;
};

// torchvision RandomResizedCrop.get_params: ten tries at a box of random area
// and log-uniform aspect ratio, else the centre crop with the ratio clamped.
CropBox RandomResizedCropBox(int64_t height, int64_t width, const TransformOptions& o,
                             SampleRng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_ratio_min = std::log(o.ratio_min), log_ratio_max = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.Uniform(o.scale_min, o.scale_max);
    const double aspect = std::exp(rng.Uniform(log_ratio_min, log_ratio_max));
    const int64_t w = RoundHalfEven(std::sqrt(target_area * aspect));
    const int64_t h = RoundHalfEven(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int64_t top = UniformInt(rng, height - h + 1);
      const int64_t left = UniformInt(rng, width - w + 1);
      return {top, left, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int64_t w = width, h = height;
  if (in_ratio < o.ratio_min) {
    h = RoundHalfEven(w / o.ratio_min);
  } else if (in_ratio > o.ratio_max) {
    w = RoundHalfEven(h * o.ratio_max);
  }
  h = std::clamp<int64_t>(h, 1, height);
  w = std::clamp<int64_t>(w, 1, width);
  return {(height - h) / 2, (width - w) / 2, h, w};
}

// uint8 [C, h, w] -> float32 [C, out_h, out_w] in [0, 255]: bicubic with
// antialiasing, clamped as a uint8 resize (PIL, torchvision) would be.
torch::Tensor ResizeToFloat(const torch::Tensor& image, int64_t out_h, int64_t out_w) {
  torch::Tensor x = image.to(torch::kFloat32);
  if (x.size(1) == out_h && x.size(2) == out_w) return x;
  namespace F = torch::nn::functional;
  x = F::interpolate(x.unsqueeze(0), F::InterpolateFuncOptions()
                                         .size(std::vector<int64_t>{out_h, out_w})
                                         .mode(torch::kBicubic)
                                         .align_corners(false)
                                         .antialias(true));
  return x.squeeze(0).clamp_(0.0, 255.0);
}

// (x / 255 - mean) / std per channel, in place.
void Normalize(torch::Tensor& x, const TransformOptions& o) {
  const int64_t channels = x.size(0);
  for (int64_t c = 0; c < channels; ++c) {
    const double mean = o.mean.size() == 1 ? o.mean[0] : o.mean[c];
    const double sd = o.std.size() == 1 ? o.std[0] : o.std[c];
    x[c].mul_(1.0 / (255.0 * sd)).sub_(mean / sd);
  }
}

std::string InvalidField(const std::string& prefix, const char* field, const std::string& got,
                         const char* allowed) {
  return absl::StrCat(prefix, field, ": ", got, " is not allowed; ", allowed);
}

}  // namespace

SampleRng::SampleRng(uint64_t seed, uint64_t stream)
    : state_(Mix64(Mix64(seed + kGolden) ^ (stream * 0xd1342543de82ef95ULL + kGolden))) {}

uint64_t SampleRng::NextU64() {
  state_ += kGolden;
  return Mix64(state_);
}

double SampleRng::Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

double SampleRng::Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

absl::Status ValidateTransformOptions(const TransformOptions& o, int channels,
                                      const std::string& prefix) {
  if (channels < 1) {
    return absl::InvalidArgumentError(absl::StrCat("images have ", channels, " channels"));
  }
  if (o.size < 1 || o.size > kMaxSize) {
    return absl::InvalidArgumentError(
        InvalidField(prefix, "size", absl::StrCat(o.size), "use 1..4096 pixels"));
  }
  if (o.kind == TransformOptions::Kind::kRandomResizedCrop) {
    if (!(o.scale_min > 0 && o.scale_min <= o.scale_max && o.scale_max <= 1)) {
      return absl::InvalidArgumentError(InvalidField(
          prefix, "scale_min/scale_max", absl::StrCat("(", o.scale_min, ", ", o.scale_max, ")"),
          "need 0 < scale_min <= scale_max <= 1"));
    }
    if (!(o.ratio_min > 0 && o.ratio_min <= o.ratio_max && std::isfinite(o.ratio_max))) {
      return absl::InvalidArgumentError(InvalidField(
          prefix, "ratio_min/ratio_max", absl::StrCat("(", o.ratio_min, ", ", o.ratio_max, ")"),
          "need 0 < ratio_min <= ratio_max"));
    }
    if (!(o.hflip_prob >= 0 && o.hflip_prob <= 1)) {
      return absl::InvalidArgumentError(
          InvalidField(prefix, "hflip_prob", absl::StrCat(o.hflip_prob), "need 0..1"));
    }
  } else if (!(o.crop_fraction > 0 && o.crop_fraction <= 1)) {
    return absl::InvalidArgumentError(
        InvalidField(prefix, "crop_fraction", absl::StrCat(o.crop_fraction), "need (0, 1]"));
  }
  for (const auto& [field, values] : {std::pair{"mean", &o.mean}, std::pair{"std", &o.std}}) {
    if (values->size() != 1 && values->size() != static_cast<size_t>(channels)) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, field, ": has ", values->size(),
                                                     " entries; give 1 or one per channel (",
                                                     channels, ")"));
    }
    for (double v : *values) {
      const bool ok = std::isfinite(v) && (values == &o.mean || v > 0);
      if (!ok) {
        return absl::InvalidArgumentError(
            InvalidField(prefix, field, absl::StrCat(v),
                         values == &o.mean ? "need a finite value" : "need a finite value > 0"));
      }
    }
  }
  return absl::OkStatus();
}

torch::Tensor ApplyTransform(const TransformOptions& o, const torch::Tensor& image,
                             SampleRng& rng) {
  TORCH_CHECK(image.dim() == 3 && image.scalar_type() == torch::kUInt8,
              "ApplyTransform wants uint8 [C, H, W], got ", image.scalar_type(), " ",
              image.sizes());
  const int64_t height = image.size(1), width = image.size(2);
  TORCH_CHECK(height > 0 && width > 0, "ApplyTransform: empty image");
  const int64_t size = o.size;
  torch::Tensor x;
  if (o.kind == TransformOptions::Kind::kRandomResizedCrop) {
    const CropBox box = RandomResizedCropBox(height, width, o, rng);
    x = ResizeToFloat(
        image.slice(1, box.top, box.top + box.height).slice(2, box.left, box.left + box.width),
        size, size);
    if (rng.Uniform() < o.hflip_prob) x = x.flip({2});
  } else {
    // torchvision Resize(int): the shorter side to `short_side`, the longer
    // scaled and truncated; then CenterCrop with round-half-even offsets.
    const int64_t short_side = std::max<int64_t>(size, RoundHalfEven(size / o.crop_fraction));
    int64_t new_h = short_side, new_w = short_side;
    if (width <= height) {
      new_h = static_cast<int64_t>(static_cast<double>(short_side) * height / width);
    } else {
      new_w = static_cast<int64_t>(static_cast<double>(short_side) * width / height);
    }
    x = ResizeToFloat(image, new_h, new_w);
    const int64_t top = RoundHalfEven((new_h - size) / 2.0);
    const int64_t left = RoundHalfEven((new_w - size) / 2.0);
    x = x.slice(1, top, top + size).slice(2, left, left + size).contiguous();
  }
  TORCH_CHECK(o.mean.size() == 1 || o.mean.size() == static_cast<size_t>(x.size(0)),
              "ApplyTransform: mean has ", o.mean.size(), " entries for ", x.size(0), " channels");
  TORCH_CHECK(o.std.size() == 1 || o.std.size() == static_cast<size_t>(x.size(0)),
              "ApplyTransform: std has ", o.std.size(), " entries for ", x.size(0), " channels");
  if (!x.is_contiguous()) x = x.contiguous();
  Normalize(x, o);
  return x;
}

}  // namespace clmae
