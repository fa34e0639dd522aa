#include "worker/engine/data/image_folder_dataset.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/byte_io.h"
#include "worker/engine/data/image_codec.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;

bool Hidden(const fs::path& p) { return p.filename().string().starts_with('.'); }

// Entries of `dir` that are directories (want_dirs) or regular files, sorted
// by name. Symbolic links are followed.
absl::StatusOr<std::vector<std::string>> ListSorted(const std::string& dir, bool want_dirs) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::vector<std::string> names;
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) break;
    const fs::directory_entry& entry = *it;
    if (Hidden(entry.path())) continue;
    std::error_code type_ec;
    const bool is_dir = entry.is_directory(type_ec);
    const bool is_file = entry.is_regular_file(type_ec);
    if (want_dirs ? is_dir : is_file) names.push_back(entry.path().filename().string());
  }
  if (ec) return absl::DataLossError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status CheckCodec(ImageFormat format, const std::string& example) {
  if (ImageCodecAvailable(format)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(example, " is a ", format == ImageFormat::kPng ? "PNG" : "JPEG",
                   " image but the engine was built without ",
                   format == ImageFormat::kPng ? "libpng" : "TurboJPEG", "; rebuild with it"));
}

}  // namespace

ImageFolderDataset::ImageFolderDataset(std::string root, int channels,
                                       std::vector<std::string> classes, std::vector<File> files)
    : root_(std::move(root)),
      channels_(channels),
      classes_(std::move(classes)),
      files_(std::move(files)) {}

absl::StatusOr<std::unique_ptr<ImageFolderDataset>> ImageFolderDataset::Open(
    const std::string& root, int channels) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.channels: ", channels, " is not supported; use 1 or 3"));
  }
  std::error_code ec;
  if (!fs::exists(root, ec)) {
    return absl::NotFoundError(absl::StrCat("image folder ", root, " does not exist"));
  }
  if (!fs::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("image folder ", root, " is not a directory"));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> classes, ListSorted(root, /*want_dirs=*/true));
  if (classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image folder ", root, " has no class directories; expected root/<class>/<image>"));
  }
  std::vector<File> files;
  for (size_t label = 0; label < classes.size(); ++label) {
    const std::string dir = absl::StrCat(root, "/", classes[label]);
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListSorted(dir, /*want_dirs=*/false));
    size_t found = 0;
    for (const std::string& name : names) {
      const ImageFormat format = FormatFromExtension(name);
      if (format == ImageFormat::kUnknown) continue;
      std::string path = absl::StrCat(dir, "/", name);
      RETURN_IF_ERROR(CheckCodec(format, path));
      files.push_back({std::move(path), static_cast<int64_t>(label)});
      ++found;
    }
    if (found == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("class directory ", dir, " holds no .png, .jpg or .jpeg image"));
    }
  }
  return std::unique_ptr<ImageFolderDataset>(
      new ImageFolderDataset(root, channels, std::move(classes), std::move(files)));
}

absl::StatusOr<EncodedExample> ImageFolderDataset::GetEncoded(int64_t index) const {
  if (index < 0 || index >= size()) {
    return absl::OutOfRangeError(
        absl::StrCat("index ", index, " outside [0, ", size(), ") of ", Describe()));
  }
  const File& file = files_[index];
  absl::StatusOr<std::string> bytes = ReadFileBytes(file.path);
  if (!bytes.ok()) {
    // A file listed at Open that has gone or cannot be read is lost data.
    return absl::DataLossError(bytes.status().message());
  }
  return EncodedExample{std::move(*bytes), file.path, file.label};
}

absl::StatusOr<Example> ImageFolderDataset::Get(int64_t index) const {
  ASSIGN_OR_RETURN(EncodedExample file, GetEncoded(index));
  ASSIGN_OR_RETURN(torch::Tensor image, DecodeImage(file.bytes, channels_, file.what));
  return Example{std::move(image), file.label};
}

std::string ImageFolderDataset::Describe() const {
  return absl::StrCat("ImageFolder ", root_, " (", files_.size(), " images, ", classes_.size(),
                      " classes)");
}

}  // namespace clmae
