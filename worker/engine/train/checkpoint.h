#pragma once

// The full training state (docs/README.md, "Checkpoints"): both networks,
// both optimizers, the position in training (step, epoch, batch of the epoch
// = the sampler position), the seed (every random draw is derived from it
// and the position, so it is the RNG state) and the job spec.

#include <torch/optim/adamw.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/model/mae_vit.h"
#include "worker/engine/model/masking_net.h"

namespace clmae {

struct TrainPosition {
  int64_t step = 0;            // micro-batches done (global iteration counter)
  int64_t epoch = 0;           // epoch of the next micro-batch
  int64_t batch_in_epoch = 0;  // its index in that epoch (sampler position)
  uint64_t seed = 0;
  int world_size = 1;
  std::string spec;  // the job spec, as YAML
};

// The networks and optimizers a checkpoint holds. `masker` and
// `masker_optimizer` are empty/null in plain-MAE mode.
struct TrainStateRefs {
  MaeVit mae{nullptr};
  MaskingNet masker{nullptr};
  torch::optim::AdamW* mae_optimizer = nullptr;
  torch::optim::AdamW* masker_optimizer = nullptr;
};

// Serialises the state and writes it atomically (temp file, fsync, rename).
absl::Status SaveCheckpoint(const std::string& path, TrainStateRefs state,
                            const TrainPosition& position);

// Loads a checkpoint written by SaveCheckpoint into `state` (whose networks
// must have the same shapes and mode), on the networks' device. NOT_FOUND for
// a missing file; INVALID_ARGUMENT when it does not match the model.
absl::StatusOr<TrainPosition> LoadCheckpoint(const std::string& path, TrainStateRefs state);

}  // namespace clmae
