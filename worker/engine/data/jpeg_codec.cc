// JPEG through TurboJPEG (libjpeg-turbo), when the build has it.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_codec_internal.h"
#include "worker/engine/util/codecs_config.h"  // CLMAE_HAVE_*: 0 or 1, from CMake
#include "worker/engine/util/torch_status.h"

#if CLMAE_HAVE_TURBOJPEG
#include <turbojpeg.h>
#endif

namespace clmae {
namespace codec_internal {

#if CLMAE_HAVE_TURBOJPEG
namespace {

struct TjDeleter {
  void operator()(void* handle) const {
    if (handle != nullptr) tjDestroy(handle);
  }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// One decompressor per thread: a handle must not be shared between threads,
// and creating one per image would cost an allocation each time.
tjhandle ThreadDecompressor() {
  thread_local TjHandle handle(tjInitDecompress());
  return handle.get();
}

}  // namespace

bool JpegAvailable() { return true; }

absl::StatusOr<torch::Tensor> DecodeJpeg(absl::string_view bytes, int channels,
                                         absl::string_view what) {
  tjhandle tj = ThreadDecompressor();
  if (tj == nullptr) return absl::ResourceExhaustedError("cannot create a TurboJPEG decompressor");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned long size = static_cast<unsigned long>(bytes.size());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, size, &width, &height, &subsamp, &colorspace) != 0) {
    return absl::DataLossError(absl::StrCat(what, ": bad JPEG: ", tjGetErrorStr2(tj)));
  }
  if (width < 1 || height < 1 || static_cast<int64_t>(width) * height > kMaxPixels) {
    return absl::DataLossError(absl::StrCat(what, ": JPEG of ", width, "x", height,
                                            " pixels is outside what the engine accepts"));
  }
  // libjpeg cannot turn CMYK into RGB itself: take the CMYK samples and
  // combine them below. Such files (Adobe's) store inverted CMYK.
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const int format = cmyk ? TJPF_CMYK : (channels == 1 ? TJPF_GRAY : TJPF_RGB);
  const int stride = tjPixelSize[format];
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height * stride);
  if (tjDecompress2(tj, data, size, pixels.data(), width, /*pitch=*/0, height, format, 0) != 0 &&
      tjGetErrorCode(tj) != TJERR_WARNING) {
    // Warnings (extraneous bytes, a few missing at the end) leave a usable
    // image, and PIL accepts those files too; only fatal errors count.
    return absl::DataLossError(absl::StrCat(what, ": bad JPEG: ", tjGetErrorStr2(tj)));
  }
  if (cmyk) {
    const size_t n = static_cast<size_t>(width) * height;
    for (size_t p = 0; p < n; ++p) {
      const unsigned k = pixels[4 * p + 3];
      for (int c = 0; c < 3; ++c) {
        pixels[4 * p + c] = static_cast<uint8_t>((pixels[4 * p + c] * k + 127) / 255);
      }
    }
    return InterleavedToPlanar(pixels.data(), height, width, 4, 3);
  }
  return InterleavedToPlanar(pixels.data(), height, width, stride, stride);
}

absl::StatusOr<std::string> EncodeJpegImpl(const torch::Tensor& planar, int quality,
                                           JpegChroma chroma) {
  if (quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(absl::StrCat("JPEG quality must be 1..100, got ", quality));
  }
  absl::StatusOr<torch::Tensor> hwc = PlanarToInterleaved(planar);
  if (!hwc.ok()) return hwc.status();
  TjHandle tj(tjInitCompress());
  if (tj == nullptr) return absl::ResourceExhaustedError("cannot create a TurboJPEG compressor");
  const bool gray = hwc->size(2) == 1;
  unsigned char* jpeg = nullptr;
  unsigned long jpeg_size = 0;
  const int rc = tjCompress2(
      tj.get(), hwc->data_ptr<uint8_t>(), static_cast<int>(hwc->size(1)),
      /*pitch=*/0, static_cast<int>(hwc->size(0)), gray ? TJPF_GRAY : TJPF_RGB, &jpeg, &jpeg_size,
      gray ? TJSAMP_GRAY : (chroma == JpegChroma::k420 ? TJSAMP_420 : TJSAMP_444), quality,
      TJFLAG_ACCURATEDCT);
  if (rc != 0) {
    const std::string message = tjGetErrorStr2(tj.get());
    tjFree(jpeg);
    return absl::InternalError(absl::StrCat("JPEG encode: ", message));
  }
  std::string out(reinterpret_cast<const char*>(jpeg), jpeg_size);
  tjFree(jpeg);
  return out;
}

#else  // !CLMAE_HAVE_TURBOJPEG

bool JpegAvailable() { return false; }

absl::StatusOr<torch::Tensor> DecodeJpeg(absl::string_view, int, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      what, ": the engine was built without TurboJPEG, so JPEG images cannot be read"));
}

absl::StatusOr<std::string> EncodeJpegImpl(const torch::Tensor&, int, JpegChroma) {
  return absl::FailedPreconditionError("the engine was built without TurboJPEG");
}

#endif  // CLMAE_HAVE_TURBOJPEG

}  // namespace codec_internal

absl::StatusOr<std::string> EncodeJpeg(const torch::Tensor& image, int quality, JpegChroma chroma) {
  return CatchAll("JPEG encode",
                  [&] { return codec_internal::EncodeJpegImpl(image, quality, chroma); });
}

}  // namespace clmae
