#pragma once

// One CL-MAE iteration (docs/method.md §3): phase A updates the MAE with the masker
// frozen, then phase B updates the masker with the MAE frozen. In plain-MAE
// mode (no masker) phase A runs on random masks and phase B is skipped.

#include <torch/optim/adamw.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/dist/collectives.h"
#include "worker/engine/model/losses.h"
#include "worker/engine/model/mae_vit.h"
#include "worker/engine/model/masking_net.h"
#include "worker/engine/train/cuda_graph.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/stream_clock.h"

namespace clmae {

struct StepOptions {
  double mask_ratio = 0.75;
  MaskerLossWeights weights;
  int accum_iter = 1;      // micro-batches per optimizer step
  double clip_grad = 0.0;  // max global norm per network; 0 = no clipping
  bool bf16 = false;       // bf16 autocast (CUDA)
  // Capture the whole iteration (both phases and optimizer steps) as one CUDA
  // graph after a few eager warm-up iterations, and replay it. Used on CUDA
  // with world size 1, accum_iter 1 and a fixed batch shape; elsewhere (see
  // graphs_off_reason) the iteration runs eagerly.
  bool cuda_graphs = false;
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
  // Device time of each part (stamps in stream order, see StreamClock).
  double phase_a_seconds = 0;
  double phase_b_seconds = 0;
  double optimizer_seconds = 0;  // gradient averaging, clipping and both steps
  double comm_wait_seconds = 0;  // host time spent finishing all-reduces
  double device_seconds = 0;     // from the start of phase A to the end of the last phase
};

// The values of StepStats, in this order, in PendingStep::values.
enum StepValue : int {
  kLossMae,
  kMaskerRec,
  kMaskerGauss,
  kMaskerKl,
  kMaskerDiv,
  kMaskerTotal,
  kMaskMeanScore,
  kMaskNearBinary,
  kGradNormMae,
  kGradNormMasker,
  kStepValueCount,
};

// One micro-batch as queued on the device: its values are computed there
// and read to the host only when asked (TwoPhaseStep::Read), so the host
// keeps queueing the next iterations. Movable.
struct PendingStep {
  torch::Tensor values;  // float32 [kStepValueCount] on the training device
  bool stepped = false;
  StreamClock clock;  // stamps: start, A backward, A step, B backward, B step
  std::array<int, 5> stamps = {-1, -1, -1, -1, -1};
  double comm_wait_seconds = 0;
};

// Not thread-safe. Holds the networks and optimizers by reference (shared
// module holders / raw pointers owned by the caller, which outlives it).
//
// No host synchronisation on the hot path: losses, gradient norms and the
// finiteness checks stay on the device. A non-finite loss or gradient norm
// is recorded there (the first one: step, phase and value) and from then on
// every optimizer step is refused on the device (the fused AdamW kernel's
// found_inf), so the weights stay those from before it; CheckFinite reads
// the record. A rank's non-finite loss also makes its gradients non-finite,
// so after averaging every rank refuses the same step.
class TwoPhaseStep {
 public:
  // `masker` empty (nullptr holder) selects plain-MAE mode, and then
  // `masker_optimizer` may be null.
  TwoPhaseStep(MaeVit mae, MaskingNet masker, torch::optim::AdamW* mae_optimizer,
               torch::optim::AdamW* masker_optimizer, Collectives* collectives,
               StepOptions options);

  // Queues both phases on `imgs` [N, C, H, W] (on the training device) at
  // curriculum factor `lambda_cl`. `step` is the global micro-batch index
  // (seeds the random masks of plain-MAE mode). When `apply` is true (the last
  // micro-batch of an accumulation window) each optimizer steps right after
  // its phase's backward, so phase B sees the updated MAE.
  // `sample_ids` (int64 [N], dataset indices) seed plain-MAE's random masks
  // per image, so a sample gets the same mask whatever rank and batch it
  // lands in; undefined: positions rank·N .. rank·N+N-1.
  // Errors: what LibTorch throws (INTERNAL, naming step and phase); gradient
  // averaging errors (a rank gone) as UNAVAILABLE / DEADLINE_EXCEEDED.
  // Non-finite values are not errors here: see CheckFinite.
  absl::StatusOr<PendingStep> Run(const torch::Tensor& imgs, double lambda_cl, int64_t step,
                                  bool apply, const torch::Tensor& sample_ids = {});

  // Waits for the device. FAILED_PRECONDITION when a loss or gradient norm
  // was non-finite since construction, naming the first: its step, phase
  // and value; no optimizer step was applied from that one on.
  absl::Status CheckFinite();

  // The host figures of `pending` (one device-to-host copy for all of them;
  // waits for the device to pass them).
  static std::vector<StepStats> Read(const std::vector<PendingStep>& pending);

  // Run, then CheckFinite and Read: for callers that want the figures of
  // every step at once (tests, benchmarks).
  absl::StatusOr<StepStats> RunAndRead(const torch::Tensor& imgs, double lambda_cl, int64_t step,
                                       bool apply, const torch::Tensor& sample_ids = {});

  // Number of patches kept per image.
  int64_t len_keep() const { return len_keep_; }
  // The patches the masker keeps for `imgs` [N, C, H, W] (on the training
  // device): bool [N, L] on the CPU, true = kept. Evaluation mode, no
  // gradients; the networks' modes are restored. CL-MAE mode only. Throws
  // what LibTorch throws.
  torch::Tensor KeptPatches(const torch::Tensor& imgs);
  bool plain_mae() const { return masker_.is_empty(); }
  // Why StepOptions::cuda_graphs has no effect for iterations on `device`
  // ("" when graphs are used, or were not asked for).
  std::string graphs_off_reason(const torch::Device& device) const;
  // Iterations replayed from a captured CUDA graph so far.
  int64_t graph_replays() const { return graph_replays_; }

 private:
  // What a non-finite value was, in the device-side record.
  enum Failure : int64_t { kNone, kMaeLoss, kMaeGradNorm, kMaskerLoss, kMaskerGradNorm };

  // Each phase: forward, backward and (when `apply`) the optimizer step;
  // returns phase A's loss / phase B's values (kMaskerRec..kMaskNearBinary)
  // on the device and sets `grad_norm` when the optimizer stepped. `order`:
  // plain-MAE mode's random mask order on the device.
  absl::StatusOr<torch::Tensor> PhaseA(const torch::Tensor& imgs, const torch::Tensor& order,
                                       bool apply, PendingStep& pending, torch::Tensor& grad_norm);
  absl::StatusOr<torch::Tensor> PhaseB(const torch::Tensor& imgs, bool apply, PendingStep& pending,
                                       torch::Tensor& grad_norm);
  // Both phases and the figures (pending.values): the work a graph captures.
  absl::Status Body(const torch::Tensor& imgs, const torch::Tensor& order, int64_t step, bool apply,
                    PendingStep& pending);
  // The same through the CUDA graph: warm-up, capture or replay.
  absl::StatusOr<PendingStep> RunGraphed(const torch::Tensor& imgs, const torch::Tensor& order,
                                         int64_t step);
  bool UseGraph(const torch::Tensor& imgs, bool apply) const;
  // The per-iteration inputs a graph reads from the device: step, curriculum
  // factor, learning rates. Fills, no host synchronisation.
  void SetInputs(int64_t step, double lambda_cl);
  void Stamp(PendingStep& pending, int index) const {
    if (!in_graph_) pending.stamps[index] = pending.clock.Stamp();
  }
  absl::Status EnsureState(const torch::Device& device);
  // Finishes averaging gradients over ranks, clips, steps (unless a failure
  // was recorded) and clears them; returns the norm before clipping.
  absl::StatusOr<torch::Tensor> ApplyGradients(torch::nn::Module& net, AdamWStepper& stepper,
                                               torch::optim::AdamW& opt, GradientAverager& averager,
                                               Failure failure, PendingStep& pending);
  // Records `value` (a scalar on the device) as the failure at the current
  // step (step_t_) unless it is finite or an earlier one was recorded. No
  // host synchronisation.
  void NoteIfNonFinite(const torch::Tensor& value, Failure failure);
  // The backward seed of a loss: 1/accum_iter, or NaN when `loss` is not
  // finite (so every gradient, and every rank's average, is non-finite too).
  torch::Tensor BackwardSeed(const torch::Tensor& loss) const;

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
  std::unique_ptr<AdamWStepper> mae_stepper_;
  std::unique_ptr<AdamWStepper> masker_stepper_;
  // The device-side failure record: step (-1: none) and Failure (int64), the
  // value (float32), and found_inf (float32, 1 once a failure is recorded).
  torch::Tensor failed_step_;
  torch::Tensor failed_what_;
  torch::Tensor failed_value_;
  torch::Tensor found_inf_;
  // The iteration's inputs on the device (SetInputs): step (int64) and
  // curriculum factor (float32).
  torch::Tensor step_t_;
  torch::Tensor lambda_t_;
  // CUDA graph mode: the graph, its static inputs and output, how many
  // iterations went through it (the first few are eager warm-up).
  std::unique_ptr<CudaGraph> graph_;
  torch::Tensor static_imgs_;
  torch::Tensor static_order_;
  torch::Tensor static_values_;
  int64_t graph_runs_ = 0;
  int64_t graph_replays_ = 0;
  bool in_graph_ = false;  // running the graph's body: no stamps inside
};

// Ranking ids for the plain-MAE baseline: per image, argsort of uniform noise
// from a generator seeded by (seed, sample id, step) — no hidden RNG state to
// save, and independent of how samples are split over ranks.
torch::Tensor RandomMaskOrder(const torch::Tensor& sample_ids, int64_t num_patches, uint64_t seed,
                              int64_t step, const torch::Device& device);

}  // namespace clmae
