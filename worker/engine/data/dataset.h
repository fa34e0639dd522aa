#pragma once

// Labelled image datasets the engine trains and evaluates on.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "torch/types.h"

namespace clmae {

// One decoded image: uint8 [C, H, W] (contiguous, CPU) and its class label
// (-1 when the dataset has none).
struct Example {
  torch::Tensor image;
  int64_t label = -1;
};

// One example as stored, not yet decoded (an image file's bytes), for a
// decoder outside the dataset (JPEG on the GPU). `what` names it in messages.
struct EncodedExample {
  std::string bytes;
  std::string what;
  int64_t label = -1;
};

// Random access to decoded images. Get() is safe to call from several threads
// at once. An image that cannot be decoded yields DATA_LOSS naming the file
// (or record) and the reason.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual absl::StatusOr<Example> Get(int64_t index) const = 0;
  // Channels of every image Get() returns (images are converted to it).
  virtual int channels() const = 0;
  // Number of classes; 0 when unlabelled.
  virtual int num_classes() const = 0;
  // What it reads, for messages ("IDX /path/train-images-idx3-ubyte.gz").
  virtual std::string Describe() const = 0;
  // Whether GetEncoded() gives the stored bytes (datasets of image files).
  virtual bool HasEncoded() const { return false; }
  // Example `index` undecoded, with its label; safe from several threads.
  // DATA_LOSS names a file that cannot be read; UNIMPLEMENTED where
  // HasEncoded() is false. (Defined here so that a dataset's vtable needs
  // nothing of dataset.cc.)
  virtual absl::StatusOr<EncodedExample> GetEncoded(int64_t /*index*/) const {
    return absl::UnimplementedError(
        absl::StrCat(Describe(), " holds no image files to hand over undecoded"));
  }
};

struct DatasetOptions {
  enum class Kind {
    kIdx,          // MNIST / Fashion-MNIST IDX files, raw or gzip
    kImageFolder,  // root/<class>/<image>.{jpg,jpeg,png}, classes sorted by name
    kSynthetic,    // deterministic random images, for tests and benchmarks
  };
  Kind kind = Kind::kIdx;
  // kIdx: a directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
  // kImageFolder: the root directory of one split.
  std::string path;
  // kIdx: "train" or "test" (t10k files).
  std::string split = "train";
  // kImageFolder, kSynthetic: every image has this many channels (1 or 3).
  int channels = 3;
  // kSynthetic: number, size and channels of images, classes, seed.
  int64_t synthetic_size = 1024;
  int synthetic_height = 28;
  int synthetic_width = 28;
  int synthetic_classes = 10;
  uint64_t synthetic_seed = 0;
};

// Opens a dataset. NOT_FOUND names the missing path; INVALID_ARGUMENT names a
// malformed file (bad IDX magic, mismatched image/label counts) or an empty
// folder.
absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const DatasetOptions& options);

}  // namespace clmae
