// PNG through libpng's simplified API (png_image), when the build has libpng.

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_codec_internal.h"
#include "worker/engine/util/codecs_config.h"  // CLMAE_HAVE_*: 0 or 1, from CMake
#include "worker/engine/util/torch_status.h"

#if CLMAE_HAVE_PNG
#include <png.h>
#endif

namespace clmae {
namespace codec_internal {

#if CLMAE_HAVE_PNG

bool PngAvailable() { return true; }

absl::StatusOr<torch::Tensor> DecodePng(absl::string_view bytes, int /*channels*/,
                                        absl::string_view what) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    return absl::DataLossError(absl::StrCat(what, ": bad PNG: ", image.message));
  }
  if (static_cast<int64_t>(image.width) * image.height > kMaxPixels) {
    png_image_free(&image);
    return absl::DataLossError(absl::StrCat(what, ": PNG of ", image.width, "x", image.height,
                                            " pixels is larger than the engine accepts"));
  }
  // Keep the file's colour type (grey stays grey); read alpha when there is
  // one and drop it below, as PIL's convert() does, rather than compositing.
  const bool color = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  const bool alpha = (image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  image.format = color ? (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB)
                       : (alpha ? PNG_FORMAT_GA : PNG_FORMAT_GRAY);
  const int stride = (color ? 3 : 1) + (alpha ? 1 : 0);
  std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, /*background=*/nullptr, pixels.data(), /*row_stride=*/0,
                             /*colormap=*/nullptr)) {
    return absl::DataLossError(absl::StrCat(what, ": bad PNG: ", image.message));
  }
  return InterleavedToPlanar(pixels.data(), image.height, image.width, stride, color ? 3 : 1);
}

absl::StatusOr<std::string> EncodePngImpl(const torch::Tensor& planar) {
  absl::StatusOr<torch::Tensor> hwc = PlanarToInterleaved(planar);
  if (!hwc.ok()) return hwc.status();
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(hwc->size(1));
  image.height = static_cast<png_uint_32>(hwc->size(0));
  image.format = hwc->size(2) == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  const void* pixels = hwc->data_ptr<uint8_t>();
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels, 0, nullptr)) {
    return absl::InternalError(absl::StrCat("PNG encode: ", image.message));
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, pixels, 0, nullptr)) {
    return absl::InternalError(absl::StrCat("PNG encode: ", image.message));
  }
  out.resize(size);
  return out;
}

#else  // !CLMAE_HAVE_PNG

bool PngAvailable() { return false; }

absl::StatusOr<torch::Tensor> DecodePng(absl::string_view, int, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": the engine was built without libpng, so PNG images cannot be read"));
}

absl::StatusOr<std::string> EncodePngImpl(const torch::Tensor&) {
  return absl::FailedPreconditionError("the engine was built without libpng");
}

#endif  // CLMAE_HAVE_PNG

}  // namespace codec_internal

absl::StatusOr<std::string> EncodePng(const torch::Tensor& image) {
  return CatchAll("PNG encode", [&] { return codec_internal::EncodePngImpl(image); });
}

}  // namespace clmae
