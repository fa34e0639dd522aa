#pragma once

// torchvision-style ImageFolder: root/<class>/<image>.{png,jpg,jpeg}.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/data/dataset.h"

namespace clmae {

// Lists the files once at Open; Get() reads and decodes one file per call and
// is safe from any number of threads.
class ImageFolderDataset : public Dataset {
 public:
  // Classes are the sub-directories of `root` in name order (label = rank in
  // that order); within a class, files in name order. Names starting with '.'
  // and files without a .png/.jpg/.jpeg extension are ignored. Images are
  // converted to `channels` (1 or 3). NOT_FOUND: `root` does not exist;
  // INVALID_ARGUMENT: bad `channels`, no class directory, or a class with no
  // image; FAILED_PRECONDITION: the folder holds PNG or JPEG files and the
  // engine was built without that codec.
  static absl::StatusOr<std::unique_ptr<ImageFolderDataset>> Open(const std::string& root,
                                                                  int channels);

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  // DATA_LOSS names a file that cannot be read or decoded; OUT_OF_RANGE a bad
  // index.
  absl::StatusOr<Example> Get(int64_t index) const override;
  int channels() const override { return channels_; }
  int num_classes() const override { return static_cast<int>(classes_.size()); }
  std::string Describe() const override;
  bool HasEncoded() const override { return true; }
  // The file's bytes; DATA_LOSS names a file that cannot be read.
  absl::StatusOr<EncodedExample> GetEncoded(int64_t index) const override;

  // Class names, in label order.
  const std::vector<std::string>& classes() const { return classes_; }
  // Path of image `index`.
  const std::string& path(int64_t index) const { return files_[index].path; }

 private:
  struct File {
    std::string path;
    int64_t label;
  };
  ImageFolderDataset(std::string root, int channels, std::vector<std::string> classes,
                     std::vector<File> files);

  std::string root_;
  int channels_;
  std::vector<std::string> classes_;
  std::vector<File> files_;
};

}  // namespace clmae
