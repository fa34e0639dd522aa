#include "worker/engine/data/idx_dataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/data/byte_io.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

// IDX magic: two zero bytes, the element type (0x08 = unsigned byte), the
// number of dimensions.
constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

uint32_t ReadBigEndian32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

// Picks `<dir>/<name>` or `<dir>/<name>.gz`, the raw file first.
absl::StatusOr<std::string> FindFile(const std::string& dir, const std::string& name) {
  std::error_code ec;
  for (const std::string& candidate :
       {absl::StrCat(dir, "/", name), absl::StrCat(dir, "/", name, ".gz")}) {
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("IDX file ", dir, "/", name, " (or ", name, ".gz) does not exist"));
}

struct IdxFile {
  std::string path;
  std::string bytes;  // decompressed
  std::vector<uint32_t> dims;
  size_t data_offset = 0;
};

// Reads, gunzips and checks the header and size of one IDX file.
absl::StatusOr<IdxFile> ReadIdx(const std::string& path, uint32_t magic) {
  IdxFile file;
  file.path = path;
  ASSIGN_OR_RETURN(file.bytes, ReadFileBytes(path));
  if (LooksGzipped(file.bytes)) {
    ASSIGN_OR_RETURN(file.bytes, GunzipBytes(file.bytes, path));
  }
  const size_t ndims = magic & 0xff;
  if (file.bytes.size() < 4 + 4 * ndims) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": too short for an IDX header (", file.bytes.size(), " bytes)"));
  }
  const uint32_t got = ReadBigEndian32(file.bytes, 0);
  if (got != magic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: bad IDX magic 0x%08x, expected 0x%08x (%s)", path, got, magic,
        magic == kImagesMagic ? "ubyte images, 3 dimensions" : "ubyte labels, 1 dimension"));
  }
  uint64_t expected = 1;
  for (size_t d = 0; d < ndims; ++d) {
    file.dims.push_back(ReadBigEndian32(file.bytes, 4 + 4 * d));
    expected *= file.dims.back();
    if (expected > (uint64_t{1} << 40)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": implausible IDX dimensions"));
    }
  }
  file.data_offset = 4 + 4 * ndims;
  const uint64_t have = file.bytes.size() - file.data_offset;
  if (have != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header promises ", expected, " bytes of data, file holds ", have));
  }
  return file;
}

}  // namespace

IdxDataset::IdxDataset(torch::Tensor images, std::vector<int64_t> labels, std::string description)
    : images_(std::move(images)), labels_(std::move(labels)), description_(std::move(description)) {
  for (int64_t label : labels_) num_classes_ = std::max<int>(num_classes_, label + 1);
}

absl::StatusOr<std::unique_ptr<IdxDataset>> IdxDataset::Open(const std::string& dir,
                                                             const std::string& split) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test") {
    prefix = "t10k";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("data.split: \"", split, "\" is not an IDX split; use \"train\" or \"test\""));
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("IDX dataset directory ", dir, " does not exist"));
  }
  ASSIGN_OR_RETURN(const std::string images_path,
                   FindFile(dir, absl::StrCat(prefix, "-images-idx3-ubyte")));
  ASSIGN_OR_RETURN(const std::string labels_path,
                   FindFile(dir, absl::StrCat(prefix, "-labels-idx1-ubyte")));
  ASSIGN_OR_RETURN(IdxFile images, ReadIdx(images_path, kImagesMagic));
  ASSIGN_OR_RETURN(IdxFile labels, ReadIdx(labels_path, kLabelsMagic));
  if (images.dims[0] != labels.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, " holds ", images.dims[0],
                                                   " images but ", labels_path, " holds ",
                                                   labels.dims[0], " labels"));
  }
  if (images.dims[0] == 0 || images.dims[1] == 0 || images.dims[2] == 0) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, ": no pixels (dimensions ",
                                                   images.dims[0], "x", images.dims[1], "x",
                                                   images.dims[2], ")"));
  }
  return CatchAll("reading IDX", [&]() -> absl::StatusOr<std::unique_ptr<IdxDataset>> {
    const int64_t n = images.dims[0];
    torch::Tensor pixels = torch::empty({n, 1, images.dims[1], images.dims[2]}, torch::kUInt8);
    std::memcpy(pixels.data_ptr<uint8_t>(), images.bytes.data() + images.data_offset,
                pixels.numel());
    std::vector<int64_t> label_values(n);
    const auto* raw =
        reinterpret_cast<const unsigned char*>(labels.bytes.data() + labels.data_offset);
    for (int64_t i = 0; i < n; ++i) label_values[i] = raw[i];
    std::string description = absl::StrCat("IDX ", images_path, " (", n, " images ", images.dims[1],
                                           "x", images.dims[2], ")");
    return std::unique_ptr<IdxDataset>(
        new IdxDataset(std::move(pixels), std::move(label_values), std::move(description)));
  });
}

absl::StatusOr<Example> IdxDataset::Get(int64_t index) const {
  if (index < 0 || index >= size()) {
    return absl::OutOfRangeError(
        absl::StrCat("index ", index, " outside [0, ", size(), ") of ", description_));
  }
  return CatchAll("IDX Get", [&]() -> absl::StatusOr<Example> {
    return Example{images_.select(0, index).clone(), labels_[index]};
  });
}

}  // namespace clmae
