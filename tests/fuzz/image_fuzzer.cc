// libFuzzer target: the PNG and JPEG decoders (DecodeImage), which read every
// image of an image-folder dataset. The first byte picks 1 or 3 channels;
// the rest is the file. A decoded image must have the shape it claims.

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "worker/engine/data/image_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int channels = (data[0] & 1) ? 3 : 1;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto image = clmae::DecodeImage(bytes, channels, "fuzz");
  if (!image.ok()) return 0;
  if (image->dim() != 3 || image->size(0) != channels || image->size(1) < 1 || image->size(2) < 1 ||
      image->scalar_type() != torch::kUInt8) {
    std::abort();
  }
  return 0;
}
