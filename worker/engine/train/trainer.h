#pragma once

// The training loop: data, the two-phase step, schedules, logging,
// checkpoints, previews, exports and the final evaluation of one rank.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "worker/engine/data/data_loader.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/data/transforms.h"
#include "worker/engine/dist/collectives.h"
#include "worker/engine/train/curriculum.h"
#include "worker/engine/train/evaluation.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/train_step.h"

namespace clmae {

struct TrainerOptions {
  ModelConfig model;
  bool plain_mae = false;
  StepOptions step;  // mask ratio, loss weights, accumulation, clipping, bf16, seed
  CurriculumOptions curriculum;
  OptimOptions optim;
  double blr = 1e-3;
  std::optional<double> lr;  // absolute; overrides blr
  double min_lr = 0.0;
  double warmup_epochs = 40;

  DatasetOptions data;
  int64_t data_limit = 0;  // first N images only (0 = all)
  TransformOptions transform;
  DataLoaderOptions loader;  // batch_size is per rank

  int epochs = 200;
  int64_t max_steps = 0;  // stop after this many iterations (0 = no limit)
  std::string device = "cpu";
  int threads = 0;  // intra-op threads; 0 = LibTorch's default
  int log_every = 10;
  std::string init_from;    // safetensors with reference names
  std::string resume_from;  // a checkpoint path, "auto" (newest in output_dir), or ""
  // When set and true (e.g. from a SIGTERM handler), every rank stops at the
  // next accumulation boundary after rank 0 wrote a checkpoint there; Run()
  // then returns CANCELLED. Not owned; read on the training thread.
  const std::atomic<bool>* stop_requested = nullptr;

  std::string output_dir = "runs/clmae";
  int checkpoint_every = 0;  // iterations; 0 = at the end only
  int keep_checkpoints = 3;
  int preview_every = 0;  // iterations; 0 = off
  int preview_images = 4;
  bool export_safetensors = true;

  bool eval_enabled = false;
  DatasetOptions eval_train;
  DatasetOptions eval_test;
  EvalOptions eval;  // the final evaluation (rank 0, after the last iteration)
  // Quality during training (rank 0, when eval_enabled): k-NN of the
  // current encoder on the first eval_periodic.train_limit/test_limit images
  // of the eval splits, before the first iteration and after every
  // eval_every_epochs epochs (0 = never). probe_epochs is ignored.
  int eval_every_epochs = 0;
  EvalOptions eval_periodic;

  std::string spec_text;  // the job spec (YAML), stored in every checkpoint
};

// What one logged iteration reports (losses averaged over ranks).
struct StepReport {
  int64_t step = 0;  // iterations done
  int64_t total_steps = 0;
  int64_t epoch = 0;
  int epochs = 0;
  double lambda_cl = 0;
  double lr = 0;
  StepStats stats;
  double data_seconds = 0;
  double step_seconds = 0;       // wall time of the iteration
  double images_per_second = 0;  // all ranks, over the last log window
  int64_t images_seen = 0;       // all ranks, since the start of the run
  // Logged iterations of CL-MAE mode, from the second on: the share of the
  // patches the masker keeps for a fixed batch of images that it also kept
  // at the previous logged iteration (1 = the same masks).
  std::optional<double> mask_overlap;
};

// One evaluation during training (TrainerOptions::eval_every_epochs).
struct QualityReport {
  int64_t step = 0;      // iterations done when it was measured
  double epoch = 0;      // epochs done (fractional after max_steps cuts one)
  double lambda_cl = 0;  // the curriculum factor of the next iteration
  double knn_top1 = 0;   // class token; fraction in [0, 1]
  double knn_top1_patch_mean = 0;
  int64_t train_images = 0;
  int64_t test_images = 0;
  double seconds = 0;  // wall time of the evaluation
};

// Receives progress; called on the training thread. Default: ignore.
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual void OnStart(int64_t /*start_step*/, int64_t /*total_steps*/) {}
  virtual void OnStep(const StepReport& /*report*/) {}
  // Every iteration (OnStep: logged ones only), before OnStep; what it
  // does costs every step, so keep it cheap (metrics).
  virtual void OnIteration(const StepReport& /*report*/) {}
  // Rank 0 wrote a full checkpoint (atomically; the file is complete).
  virtual void OnCheckpoint(const std::string& /*path*/, int64_t /*step*/) {}
  // Rank 0 wrote another output file: `kind` is "weights" or "encoder" (the
  // safetensors exports) or "preview" (a preview PNG).
  virtual void OnExport(const std::string& /*kind*/, const std::string& /*path*/,
                        int64_t /*step*/) {}
  // Local retention asks before it deletes an older checkpoint; an observer
  // that still needs the file (an upload not yet confirmed) returns false,
  // and retention asks again after the next checkpoint.
  virtual bool MayDeleteCheckpoint(const std::string& /*path*/) { return true; }
  // The final evaluation, with its baselines.
  virtual void OnEvaluation(const EvalResult& /*result*/) {}
  // An evaluation during training.
  virtual void OnQuality(const QualityReport& /*report*/) {}
  virtual void OnMessage(const std::string& /*line*/) {}
  // The run moves to another phase: "finish" once the last iteration is
  // done (final checkpoint, exports, evaluation); "eval" during an
  // evaluation while training, then "train" again. Outside "train" the step
  // does not advance.
  virtual void OnPhase(const std::string& /*phase*/) {}
};

class Trainer {
 public:
  // Validates the options, builds the networks (on the device), optimizers,
  // data and output folder, and resumes or initialises weights as asked.
  // `collectives` (world size 1 when null) and `observer` may be null and
  // must outlive the trainer.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options,
                                                         Collectives* collectives,
                                                         TrainObserver* observer);
  ~Trainer();

  // Trains to the end (or max_steps), writing checkpoints, previews, the
  // JSONL log, exports and the evaluation. On a non-finite loss it stops with
  // FAILED_PRECONDITION naming the step and phase; the last checkpoint
  // written stays the last good one.
  absl::Status Run();

  // Result of the final evaluation, when it ran.
  const std::optional<EvalResult>& eval_result() const;
  // Iterations done so far (including those before a resume).
  int64_t step() const;
  // The networks (for tests and exports).
  MaeVit& mae();
  MaskingNet& masker();
  // Path of the newest checkpoint written or resumed from ("" if none).
  const std::string& last_checkpoint() const;

 private:
  struct State;
  explicit Trainer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Newest loadable-looking checkpoint file in `output_dir`/checkpoints, or ""
// when there is none.
std::string FindLatestCheckpoint(const std::string& output_dir);

}  // namespace clmae
