#pragma once

// Pieces shared by image_codec.cc, png_codec.cc and jpeg_codec.cc; not part
// of the engine's interface.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "torch/types.h"

namespace clmae::codec_internal {

// Copies the first `keep` of `stride` interleaved channels of an H x W pixel
// buffer into a new uint8 [keep, H, W] tensor.
torch::Tensor InterleavedToPlanar(const uint8_t* pixels, int64_t height, int64_t width, int stride,
                                  int keep);

// uint8 [C, H, W] (C in {1, 3}) -> uint8 [H, W, C] contiguous, for the encoders.
absl::StatusOr<torch::Tensor> PlanarToInterleaved(const torch::Tensor& image);

// uint8 [1 or 3, H, W] -> uint8 [channels, H, W]: luma (ITU-R 601, rounded, as
// PIL) or grey replicated.
torch::Tensor ConvertChannels(const torch::Tensor& image, int channels);

bool PngAvailable();
bool JpegAvailable();
// Decode to the file's own channel count (1 or 3) or, where the codec can do
// it cheaply, straight to `channels`; DecodeImage converts what remains.
absl::StatusOr<torch::Tensor> DecodePng(absl::string_view bytes, int channels,
                                        absl::string_view what);
absl::StatusOr<torch::Tensor> DecodeJpeg(absl::string_view bytes, int channels,
                                         absl::string_view what);

// Largest image we agree to decode, in pixels, so a corrupt header cannot ask
// for gigabytes.
inline constexpr int64_t kMaxPixels = int64_t{1} << 28;

}  // namespace clmae::codec_internal
