#include "worker/engine/data/synthetic_dataset.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/data/transforms.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;
constexpr int kMaxSide = 4096;

// A shape centred at the origin with radius `r`, rotated by `angle`.
struct Shape {
  Shape(int kind, double r, double angle)
      : kind(kind), r(r), c(std::cos(angle)), s(std::sin(angle)) {
    for (int k = 0; k < 3; ++k) {
      normals[k][0] = std::cos(kTwoPi * k / 3.0);
      normals[k][1] = std::sin(kTwoPi * k / 3.0);
    }
  }

  // Signed distance in pixels from (x, y), negative inside.
  double Distance(double x, double y) const {
    const double u = c * x + s * y, v = -s * x + c * y;
    switch (kind) {
      case 0:  // disc
        return std::hypot(u, v) - r;
      case 1:  // square
        return std::max(std::abs(u), std::abs(v)) - 0.8 * r;
      case 2:  // ring
        return std::abs(std::hypot(u, v) - 0.7 * r) - 0.3 * r;
      default: {  // triangle: three half-planes
        double d = -1e9;
        for (const auto& n : normals) d = std::max(d, u * n[0] + v * n[1]);
        return d - 0.5 * r;
      }
    }
  }

  int kind;
  double r, c, s;
  double normals[3][2];
};

// Class colour: hues spread by the golden ratio, full value.
void ClassColour(int label, int channels, double rgb[3]) {
  if (channels == 1) {
    rgb[0] = 150.0 + 15.0 * (label % 7);
    return;
  }
  const double h = std::fmod(0.618033988749895 * label, 1.0) * 6.0;
  const double f = h - std::floor(h);
  const double v = 240.0, p = 40.0, q = v - (v - p) * f, t = p + (v - p) * f;
  const double table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  const int sector = static_cast<int>(h) % 6;
  for (int ch = 0; ch < 3; ++ch) rgb[ch] = table[sector][ch];
}

}  // namespace

absl::StatusOr<std::unique_ptr<SyntheticDataset>> SyntheticDataset::Create(
    const SyntheticOptions& options) {
  if (options.size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.synthetic_size: ", options.size, " images; need at least 1"));
  }
  if (options.height < 1 || options.height > kMaxSide || options.width < 1 ||
      options.width > kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat("data.synthetic_height/width: ", options.height,
                                                   "x", options.width, " is outside 1..",
                                                   kMaxSide));
  }
  if (options.channels != 1 && options.channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.channels: ", options.channels, " is not supported; use 1 or 3"));
  }
  if (options.classes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.synthetic_classes: ", options.classes, " must be >= 0"));
  }
  return std::unique_ptr<SyntheticDataset>(new SyntheticDataset(options));
}

absl::StatusOr<Example> SyntheticDataset::Get(int64_t index) const {
  if (index < 0 || index >= size()) {
    return absl::OutOfRangeError(
        absl::StrCat("index ", index, " outside [0, ", size(), ") of ", Describe()));
  }
  return CatchAll("synthetic image", [&]() -> absl::StatusOr<Example> {
    const int h = options_.height, w = options_.width, channels = options_.channels;
    const int label = options_.classes > 0 ? static_cast<int>(index % options_.classes) : -1;
    SampleRng rng(options_.seed, static_cast<uint64_t>(index));
    // Background: a gentle linear gradient.
    const double base = rng.Uniform(20.0, 90.0);
    const double slope = rng.Uniform(0.0, 60.0);
    const double dir = rng.Uniform(0.0, kTwoPi);
    const double gx = std::cos(dir) * slope / w, gy = std::sin(dir) * slope / h;
    // Shape: kind and colour from the class, placement from the index.
    const int kind = label < 0 ? static_cast<int>(rng.NextU64() % 4) : label % 4;
    double colour[3];
    ClassColour(std::max(label, 0), channels, colour);
    const double side = std::min(h, w);
    const double r = side * rng.Uniform(0.22, 0.36);
    const double cx = w * 0.5 + rng.Uniform(-0.15, 0.15) * w;
    const double cy = h * 0.5 + rng.Uniform(-0.15, 0.15) * h;
    const Shape shape(kind, r, rng.Uniform(0.0, kTwoPi));
    const uint64_t noise_seed = rng.NextU64();

    torch::Tensor image = torch::empty({channels, h, w}, torch::kUInt8);
    uint8_t* out = image.data_ptr<uint8_t>();
    const int64_t plane = static_cast<int64_t>(h) * w;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const double bg = base + gx * (x - w * 0.5) + gy * (y - h * 0.5) + slope * 0.5;
        const double d = shape.Distance(x + 0.5 - cx, y + 0.5 - cy);
        const double alpha = std::clamp(0.5 - d, 0.0, 1.0);  // one-pixel soft edge
        const int64_t p = static_cast<int64_t>(y) * w + x;
        const double noise =
            static_cast<double>(SampleRng(noise_seed, static_cast<uint64_t>(p)).NextU64() % 9) - 4;
        for (int c = 0; c < channels; ++c) {
          const double v = bg * (1.0 - alpha) + colour[c] * alpha + noise;
          out[c * plane + p] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
      }
    }
    return Example{std::move(image), label};
  });
}

std::string SyntheticDataset::Describe() const {
  return absl::StrCat("synthetic (", options_.size, " images ", options_.channels, "x",
                      options_.height, "x", options_.width, ", ", options_.classes,
                      " classes, seed ", options_.seed, ")");
}

}  // namespace clmae
