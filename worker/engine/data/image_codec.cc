#include "worker/engine/data/image_codec.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/data/image_codec_internal.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace codec_internal {

torch::Tensor InterleavedToPlanar(const uint8_t* pixels, int64_t height, int64_t width, int stride,
                                  int keep) {
  torch::Tensor out = torch::empty({keep, height, width}, torch::kUInt8);
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t plane = height * width;
  if (stride == 1 && keep == 1) {
    std::memcpy(dst, pixels, plane);
    return out;
  }
  for (int64_t p = 0; p < plane; ++p) {
    for (int c = 0; c < keep; ++c) dst[c * plane + p] = pixels[p * stride + c];
  }
  return out;
}

absl::StatusOr<torch::Tensor> PlanarToInterleaved(const torch::Tensor& image) {
  if (image.dim() != 3 || image.scalar_type() != torch::kUInt8 ||
      (image.size(0) != 1 && image.size(0) != 3) || image.size(1) < 1 || image.size(2) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("image to encode must be uint8 [1 or 3, H, W], got ",
                     c10::toString(image.scalar_type()), " of shape ", c10::str(image.sizes())));
  }
  return image.to(torch::kCPU).permute({1, 2, 0}).contiguous();
}

torch::Tensor ConvertChannels(const torch::Tensor& image, int channels) {
  const int64_t have = image.size(0);
  if (have == channels) return image;
  if (channels == 3) return image.expand({3, image.size(1), image.size(2)}).contiguous();
  // Three channels to one: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
  const int64_t plane = image.size(1) * image.size(2);
  torch::Tensor src = image.contiguous();
  torch::Tensor out = torch::empty({1, image.size(1), image.size(2)}, torch::kUInt8);
  const uint8_t* r = src.data_ptr<uint8_t>();
  const uint8_t* g = r + plane;
  const uint8_t* b = g + plane;
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t p = 0; p < plane; ++p) {
    dst[p] = static_cast<uint8_t>((19595u * r[p] + 38470u * g[p] + 7471u * b[p] + 0x8000u) >> 16);
  }
  return out;
}

}  // namespace codec_internal

ImageFormat SniffImageFormat(absl::string_view bytes) {
  static constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0) {
    return ImageFormat::kPng;
  }
  if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xff &&
      static_cast<unsigned char>(bytes[1]) == 0xd8 &&
      static_cast<unsigned char>(bytes[2]) == 0xff) {
    return ImageFormat::kJpeg;
  }
  return ImageFormat::kUnknown;
}

ImageFormat FormatFromExtension(absl::string_view path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".png")) return ImageFormat::kPng;
  if (absl::EndsWith(lower, ".jpg") || absl::EndsWith(lower, ".jpeg")) return ImageFormat::kJpeg;
  return ImageFormat::kUnknown;
}

bool ImageCodecAvailable(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return codec_internal::PngAvailable();
    case ImageFormat::kJpeg:
      return codec_internal::JpegAvailable();
    case ImageFormat::kUnknown:
      break;
  }
  return false;
}

absl::StatusOr<torch::Tensor> DecodeImage(absl::string_view bytes, int channels,
                                          absl::string_view what) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("channels must be 1 or 3 to decode ", what, ", got ", channels));
  }
  return CatchAll(absl::StrCat("decoding ", what), [&]() -> absl::StatusOr<torch::Tensor> {
    absl::StatusOr<torch::Tensor> decoded;
    switch (SniffImageFormat(bytes)) {
      case ImageFormat::kPng:
        decoded = codec_internal::DecodePng(bytes, channels, what);
        break;
      case ImageFormat::kJpeg:
        decoded = codec_internal::DecodeJpeg(bytes, channels, what);
        break;
      case ImageFormat::kUnknown:
        return absl::DataLossError(absl::StrCat(
            what, ": not a PNG or JPEG image (unrecognised signature, ", bytes.size(), " bytes)"));
    }
    if (!decoded.ok()) return decoded.status();
    return codec_internal::ConvertChannels(*decoded, channels);
  });
}

}  // namespace clmae
