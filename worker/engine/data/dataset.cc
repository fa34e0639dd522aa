#include "worker/engine/data/dataset.h"

#include "absl/status/status.h"
#include "worker/engine/data/idx_dataset.h"
#include "worker/engine/data/image_folder_dataset.h"
#include "worker/engine/data/synthetic_dataset.h"

namespace clmae {

absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const DatasetOptions& options) {
  switch (options.kind) {
    case DatasetOptions::Kind::kIdx: {
      absl::StatusOr<std::unique_ptr<IdxDataset>> idx =
          IdxDataset::Open(options.path, options.split);
      if (!idx.ok()) return idx.status();
      return std::unique_ptr<Dataset>(std::move(*idx));
    }
    case DatasetOptions::Kind::kImageFolder: {
      absl::StatusOr<std::unique_ptr<ImageFolderDataset>> folder =
          ImageFolderDataset::Open(options.path, options.channels);
      if (!folder.ok()) return folder.status();
      return std::unique_ptr<Dataset>(std::move(*folder));
    }
    case DatasetOptions::Kind::kSynthetic: {
      SyntheticOptions synthetic;
      synthetic.size = options.synthetic_size;
      synthetic.height = options.synthetic_height;
      synthetic.width = options.synthetic_width;
      synthetic.channels = options.channels;
      synthetic.classes = options.synthetic_classes;
      synthetic.seed = options.synthetic_seed;
      absl::StatusOr<std::unique_ptr<SyntheticDataset>> dataset =
          SyntheticDataset::Create(synthetic);
      if (!dataset.ok()) return dataset.status();
      return std::unique_ptr<Dataset>(std::move(*dataset));
    }
  }
  return absl::InvalidArgumentError("data.kind: unknown dataset kind");
}

}  // namespace clmae
