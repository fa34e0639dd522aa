#pragma once

// Image transforms: the pretraining augmentation of docs/method.md §5 and a
// deterministic evaluation transform.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "torch/types.h"

namespace clmae {

// A small, splittable counter-based generator: the same (seed, stream) always
// gives the same numbers, independent of threads or earlier draws. Used so an
// image's augmentation depends only on (seed, epoch, sample index).
class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t stream);
  uint64_t NextU64();
  double Uniform();                      // [0, 1)
  double Uniform(double lo, double hi);  // [lo, hi)

 private:
  uint64_t state_;
};

struct TransformOptions {
  enum class Kind {
    kRandomResizedCrop,  // RandomResizedCrop(scale, ratio, bicubic) + hflip + normalise
    kEval,               // resize shorter side to size/crop_fraction, centre crop, normalise
  };
  Kind kind = Kind::kRandomResizedCrop;
  int size = 224;  // output is size x size
  double scale_min = 0.2;
  double scale_max = 1.0;
  double ratio_min = 3.0 / 4.0;
  double ratio_max = 4.0 / 3.0;
  double hflip_prob = 0.5;
  // kEval: the shorter side is resized to size / crop_fraction (0.875 is the
  // ImageNet convention; 1.0 resizes straight to size).
  double crop_fraction = 0.875;
  // Per-channel mean and std (of [0,1] pixels); one entry is broadcast.
  std::vector<double> mean = {0.485, 0.456, 0.406};
  std::vector<double> std = {0.229, 0.224, 0.225};
};

// Checks sizes, ranges and that mean/std have 1 or `channels` entries; the
// error names the field under `field_prefix`.
absl::Status ValidateTransformOptions(const TransformOptions& options, int channels,
                                      const std::string& field_prefix = "data.transform.");

// Applies `options` to a uint8 [C, H, W] image; returns float32 [C, size, size].
// Randomness (crop box, flip) comes only from `rng`. `options` must have
// passed ValidateTransformOptions for C channels; otherwise, or for an image
// that is not uint8 [C, H, W], it throws c10::Error (callers at the engine's
// edge catch it).
torch::Tensor ApplyTransform(const TransformOptions& options, const torch::Tensor& image,
                             SampleRng& rng);

}  // namespace clmae
