#pragma once

// One CL-MAE iteration (docs/method.md §3): phase A updates the MAE with the masker
// frozen, then phase B updates the masker with the MAE frozen. In plain-MAE
// mode (no masker) phase A runs on random masks and phase B is skipped.

#include <torch/optim/adamw.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/dist/collectives.h"
#include "worker/engine/model/losses.h"
#include "worker/engine/model/mae_vit.h"
#include "worker/engine/model/masking_net.h"

namespace clmae {

struct StepOptions {
  double mask_ratio = 0.75;
  MaskerLossWeights weights;
  int accum_iter = 1;                 // micro-batches per optimizer step
  double clip_grad = 0.0;             // max global norm per network; 0 = no clipping
  bool bf16 = false;                  // bf16 autocast (CUDA)
  bool sync_timing = true;            // synchronise the device at phase boundaries for timings
  uint64_t seed = 0;                  // random masks of plain-MAE mode: from (seed, sample, step)
  GradientAveragerOptions averaging;  // bucket size, overlap (world size > 1)
};

// What one micro-batch did, averaged over ranks where noted by the trainer.
struct StepStats {
  double loss_mae = 0;    // phase A: masked reconstruction loss
  double masker_rec = 0;  // phase B terms (0 in plain-MAE mode)
  double masker_gauss = 0;
  double masker_kl = 0;
  double masker_div = 0;
  double masker_total = 0;
  double mask_mean_score = 0;   // mean masker score
  double mask_near_binary = 0;  // share of scores < 0.1 or > 0.9
  double grad_norm_mae = 0;     // before clipping; 0 unless the optimizer stepped
  double grad_norm_masker = 0;
  bool stepped = false;
  double phase_a_seconds = 0;
  double phase_b_seconds = 0;
  double optimizer_seconds = 0;  // gradient averaging, clipping and both steps
  double comm_wait_seconds = 0;  // part of optimizer_seconds spent finishing all-reduces
};

// Not thread-safe. Holds the networks and optimizers by reference (shared
// module holders / raw pointers owned by the caller, which outlives it).
class TwoPhaseStep {
 public:
  // `masker` empty (nullptr holder) selects plain-MAE mode, and then
  // `masker_optimizer` may be null.
  TwoPhaseStep(MaeVit mae, MaskingNet masker, torch::optim::AdamW* mae_optimizer,
               torch::optim::AdamW* masker_optimizer, Collectives* collectives,
               StepOptions options);

  // Runs both phases on `imgs` [N, C, H, W] (on the training device) at
  // curriculum factor `lambda_cl`. `step` is the global micro-batch index
  // (seeds the random masks of plain-MAE mode). When `apply` is true (the last
  // micro-batch of an accumulation window) each optimizer steps right after
  // its phase's backward, so phase B sees the updated MAE.
  // `sample_ids` (int64 [N], dataset indices) seed plain-MAE's random masks
  // per image, so a sample gets the same mask whatever rank and batch it
  // lands in; undefined: positions rank·N .. rank·N+N-1.
  // FAILED_PRECONDITION names the step and phase of a non-finite loss; the
  // networks are then unchanged by that phase. Gradient averaging errors
  // (a rank gone) come back as UNAVAILABLE / DEADLINE_EXCEEDED.
  absl::StatusOr<StepStats> Run(const torch::Tensor& imgs, double lambda_cl, int64_t step,
                                bool apply, const torch::Tensor& sample_ids = {});

  // Number of patches kept per image.
  int64_t len_keep() const { return len_keep_; }
  // The patches the masker keeps for `imgs` [N, C, H, W] (on the training
  // device): bool [N, L] on the CPU, true = kept. Evaluation mode, no
  // gradients; the networks' modes are restored. CL-MAE mode only. Throws
  // what LibTorch throws.
  torch::Tensor KeptPatches(const torch::Tensor& imgs);
  bool plain_mae() const { return masker_.is_empty(); }

 private:
  absl::StatusOr<double> PhaseA(const torch::Tensor& imgs, const torch::Tensor& sample_ids,
                                int64_t step, bool apply, StepStats& stats);
  absl::Status PhaseB(const torch::Tensor& imgs, double lambda_cl, int64_t step, bool apply,
                      StepStats& stats);
  absl::Status EnsureAveragers();
  // Finishes averaging gradients over ranks, clips, steps and clears them.
  absl::StatusOr<double> ApplyGradients(torch::nn::Module& net, torch::optim::AdamW& opt,
                                        GradientAverager& averager, const char* phase,
                                        StepStats& stats);
  void Sync(const torch::Device& device) const;

  MaeVit mae_;
  MaskingNet masker_;
  torch::optim::AdamW* mae_optimizer_;
  torch::optim::AdamW* masker_optimizer_;
  Collectives* collectives_;
  StepOptions options_;
  int64_t len_keep_;
  std::vector<torch::Tensor> mae_params_;
  std::vector<torch::Tensor> masker_params_;
  std::unique_ptr<GradientAverager> mae_averager_;
  std::unique_ptr<GradientAverager> masker_averager_;
};

// Ranking ids for the plain-MAE baseline: per image, argsort of uniform noise
// from a generator seeded by (seed, sample id, step) — no hidden RNG state to
// save, and independent of how samples are split over ranks.
torch::Tensor RandomMaskOrder(const torch::Tensor& sample_ids, int64_t num_patches, uint64_t seed,
                              int64_t step, const torch::Device& device);

}  // namespace clmae
