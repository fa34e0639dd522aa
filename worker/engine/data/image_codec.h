#pragma once

// PNG (libpng) and JPEG (TurboJPEG) decoding into uint8 [C, H, W] tensors, and
// encoding back (for tests and preview images). Each codec is optional at
// build time: without it the calls fail with FAILED_PRECONDITION.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "torch/types.h"

namespace clmae {

enum class ImageFormat { kUnknown, kPng, kJpeg };

// The format announced by the first bytes of `bytes` (signature, not name).
ImageFormat SniffImageFormat(absl::string_view bytes);

// The format a file name's extension announces (.png, .jpg, .jpeg; any case).
ImageFormat FormatFromExtension(absl::string_view path);

// Whether this build links the codec for `format`.
bool ImageCodecAvailable(ImageFormat format);

// Decodes a PNG or JPEG held in `bytes` to uint8 [channels, H, W] (channels 1
// or 3). Colour becomes grey with the ITU-R 601 luma weights (as PIL's
// convert("L")); grey is repeated into three channels; alpha is dropped.
// `what` (the file name) prefixes messages. DATA_LOSS: undecodable data;
// FAILED_PRECONDITION: the engine was built without that codec. Thread-safe.
absl::StatusOr<torch::Tensor> DecodeImage(absl::string_view bytes, int channels,
                                          absl::string_view what);

// Encodes a uint8 [C, H, W] image, C in {1, 3}, as PNG.
absl::StatusOr<std::string> EncodePng(const torch::Tensor& image);

// Chroma subsampling of a colour JPEG: full (4:4:4), or halved both ways
// (4:2:0, what cameras and most photo collections, ImageNet's included, use).
enum class JpegChroma { k444, k420 };

// Encodes a uint8 [C, H, W] image, C in {1, 3}, as baseline JPEG with the
// given quality (1..100) and chroma subsampling (ignored for grey).
absl::StatusOr<std::string> EncodeJpeg(const torch::Tensor& image, int quality = 95,
                                       JpegChroma chroma = JpegChroma::k444);

}  // namespace clmae
