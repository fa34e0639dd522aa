#pragma once

// The networks, optimizers and two-phase step of one benchmark run, built the
// same way by every engine benchmark and check.

#include <torch/torch.h>

#include <memory>

#include "common/model_config.h"
#include "worker/engine/dist/collectives.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/train_step.h"

namespace clmae {

// Not thread-safe. Networks from seed 0 on the device given to Make; the
// step exists after Start.
struct BenchModel {
  MaeVit mae{nullptr};
  MaskingNet masker{nullptr};  // empty in plain-MAE mode
  std::unique_ptr<torch::optim::AdamW> mae_opt;
  std::unique_ptr<torch::optim::AdamW> masker_opt;  // null in plain-MAE mode
  LocalCollectives local;
  std::unique_ptr<TwoPhaseStep> step;

  static std::unique_ptr<BenchModel> Make(const ModelConfig& config, const torch::Device& device,
                                          bool plain, double lr);
  // Creates `step` (world size 1) over the networks, e.g. after a checkpoint
  // was loaded into refs().
  TwoPhaseStep& Start(const StepOptions& options);
  TrainStateRefs refs() { return {mae, masker, mae_opt.get(), masker_opt.get()}; }
};

}  // namespace clmae
