#include "worker/engine/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "worker/engine/dist/replica_check.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/lr_schedule.h"
#include "worker/engine/train/preview.h"
#include "worker/engine/train/safetensors.h"
#include "worker/engine/train/weights.h"
#include "worker/engine/util/json.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kCheckpointPrefix[] = "step-";
// Images whose kept masks are compared between log steps (mask overlap).
constexpr int64_t kOverlapImages = 8;
constexpr char kCheckpointSuffix[] = ".ckpt";
// Iterations queued on the device before their figures are read even
// without a log step (bounds how late a stop request or a non-finite value
// is noticed when log_every is large).
constexpr size_t kMaxUnreadIterations = 100;

// The first `limit` images of another dataset.
class LimitedDataset final : public Dataset {
 public:
  LimitedDataset(std::unique_ptr<Dataset> base, int64_t limit)
      : base_(std::move(base)), size_(std::min(limit, base_->size())) {}
  int64_t size() const override { return size_; }
  absl::StatusOr<Example> Get(int64_t index) const override { return base_->Get(index); }
  int channels() const override { return base_->channels(); }
  int num_classes() const override { return base_->num_classes(); }
  std::string Describe() const override {
    return absl::StrCat(base_->Describe(), " (first ", size_, ")");
  }
  bool HasEncoded() const override { return base_->HasEncoded(); }
  absl::StatusOr<EncodedExample> GetEncoded(int64_t index) const override {
    return base_->GetEncoded(index);
  }

 private:
  std::unique_ptr<Dataset> base_;
  int64_t size_;
};

absl::StatusOr<std::shared_ptr<const Dataset>> OpenLimited(const DatasetOptions& options,
                                                           int64_t limit) {
  ASSIGN_OR_RETURN(auto ds, OpenDataset(options));
  if (limit > 0 && limit < ds->size()) {
    return std::shared_ptr<const Dataset>(std::make_shared<LimitedDataset>(std::move(ds), limit));
  }
  return std::shared_ptr<const Dataset>(std::move(ds));
}

std::string CheckpointName(int64_t step) {
  return absl::StrFormat("%s%09d%s", kCheckpointPrefix, step, kCheckpointSuffix);
}

// Checkpoint files of a run, oldest first.
std::vector<fs::path> ListCheckpoints(const std::string& output_dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(output_dir) / "checkpoints", ec)) {
    const auto name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind(kCheckpointPrefix, 0) == 0 &&
        name.size() > sizeof(kCheckpointSuffix) &&
        name.compare(name.size() - (sizeof(kCheckpointSuffix) - 1), std::string::npos,
                     kCheckpointSuffix) == 0) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status ValidateOptions(const TrainerOptions& o) {
  RETURN_IF_ERROR(ValidateModelConfig(o.model));
  const int64_t l = o.model.num_patches();
  if (!(o.step.mask_ratio > 0 && o.step.mask_ratio < 1) ||
      std::floor(l * (1 - o.step.mask_ratio)) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("masking.mask_ratio must be in (0, 1) and keep at least one of ", l,
                     " patches, got ", o.step.mask_ratio));
  }
  if (o.epochs < 1)
    return absl::InvalidArgumentError(absl::StrCat("train.epochs must be >= 1, got ", o.epochs));
  if (o.loader.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.batch_size must be >= 1, got ", o.loader.batch_size));
  }
  if (o.step.accum_iter < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.accum_iter must be >= 1, got ", o.step.accum_iter));
  }
  if (o.log_every < 1) return absl::InvalidArgumentError("train.log_every must be >= 1");
  if (o.keep_checkpoints < 1)
    return absl::InvalidArgumentError("output.keep_checkpoints must be >= 1");
  if (o.eval_every_epochs < 0) return absl::InvalidArgumentError("eval.every_epochs must be >= 0");
  RETURN_IF_ERROR(ValidateTransformOptions(o.transform, o.model.in_chans));
  return absl::OkStatus();
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  try {
    torch::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("train.device is '", name, "' but no CUDA device is available"));
    }
    if (device.is_cuda() && device.has_index() &&
        device.index() >= static_cast<int>(torch::cuda::device_count())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "train.device '", name, "': only ", torch::cuda::device_count(), " CUDA devices"));
    }
    if (!device.is_cpu() && !device.is_cuda()) throw std::invalid_argument("unsupported");
    return device;
  } catch (const std::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.device must be cpu, cuda or cuda:N, got '", name, "'"));
  }
}

// The deterministic transform of previews, mask overlap and evaluation: the
// whole image resized and normalised like the training images.
TransformOptions EvalTransform(const TrainerOptions& options) {
  TransformOptions eval = options.transform;
  eval.kind = TransformOptions::Kind::kEval;
  eval.crop_fraction = 1.0;
  return eval;
}

// The first `count` images of the dataset (fewer if it is smaller) under the
// evaluation transform, stacked on the CPU: previews and mask overlap.
absl::StatusOr<torch::Tensor> FixedImages(const TrainerOptions& options, const Dataset& dataset,
                                          int64_t count) {
  const TransformOptions eval = EvalTransform(options);
  std::vector<torch::Tensor> imgs;
  SampleRng rng(0, 0);
  for (int64_t i = 0; i < std::min<int64_t>(count, dataset.size()); ++i) {
    ASSIGN_OR_RETURN(Example ex, dataset.Get(i));
    imgs.push_back(ApplyTransform(eval, ex.image, rng));
  }
  return torch::stack(imgs);
}

// What Run derives once from the options and the data: the iteration budget
// and the schedules.
struct RunPlan {
  int64_t per_epoch = 0;  // iterations per epoch (this rank's batches)
  int64_t limit = 0;      // the run ends after this many iterations
  int world = 1;
  int64_t effective_batch = 0;  // images per optimizer step, all ranks
  LrScheduleOptions lr_options;
  CurriculumSchedule curriculum;
};

// What Run carries from one iteration to the next.
struct RunProgress {
  double lr = 0;                   // set at every accumulation boundary
  Clock::time_point window_start;  // start of the current log window
  int64_t window_images = 0;       // all ranks, in the current log window
  int64_t images_seen = 0;         // all ranks, since the start of the run
};

}  // namespace

struct Trainer::State {
  TrainerOptions options;
  torch::Device device = torch::kCPU;
  MaeVit mae{nullptr};
  MaskingNet masker{nullptr};
  std::unique_ptr<torch::optim::AdamW> mae_optimizer;
  std::unique_ptr<torch::optim::AdamW> masker_optimizer;
  std::unique_ptr<Collectives> owned_collectives;
  Collectives* collectives = nullptr;
  TrainObserver* observer = nullptr;
  TrainObserver null_observer;
  std::shared_ptr<const Dataset> dataset;
  // Rank 0 with eval_enabled: the labelled splits of the evaluations.
  std::shared_ptr<const Dataset> eval_train_set;
  std::shared_ptr<const Dataset> eval_test_set;
  std::unique_ptr<DataLoader> loader;
  std::unique_ptr<TwoPhaseStep> step_runner;
  // Iterations queued on the device whose figures were not read yet: their
  // reports wait here (without stats) until ReadIterations.
  struct Unread {
    StepReport report;
    PendingStep step;
  };
  std::vector<Unread> unread;
  // Every rank agreed to stop at the next resumable point.
  bool stopping = false;
  TrainPosition position;
  torch::Tensor preview_images;
  torch::Tensor overlap_images;  // fixed images whose kept masks are compared
  torch::Tensor last_kept;       // their kept patches at the previous log step
  std::optional<EvalResult> eval_result;
  std::string last_checkpoint;
  std::ofstream jsonl;

  bool is_rank0() const { return collectives->rank() == 0; }
  std::vector<torch::Tensor> AllParameters() const {
    std::vector<torch::Tensor> params = mae->parameters();
    if (!masker.is_empty()) {
      auto mp = masker->parameters();
      params.insert(params.end(), mp.begin(), mp.end());
    }
    return params;
  }
  TrainStateRefs refs() { return {mae, masker, mae_optimizer.get(), masker_optimizer.get()}; }

  // Set-up (Create), in this order once `options`, `collectives` and
  // `observer` are set.
  absl::Status SelectDevice();
  absl::Status OpenData();
  absl::Status OpenEvalData();
  absl::Status BuildNetworks();
  absl::Status ResumeIfAsked();
  absl::Status PrepareOutputs();

  // The training loop (Run).
  RunPlan PlanRun() const;
  RunProgress StartRun(const RunPlan& plan);
  double FractionalEpoch(int64_t per_epoch) const {
    return position.epoch + static_cast<double>(position.batch_in_epoch) / per_epoch;
  }
  absl::Status TrainIteration(const RunPlan& plan, RunProgress& progress);
  absl::Status TrainingStopped(const absl::Status& cause) const;
  void AdvancePosition(const RunPlan& plan);
  bool LogStep(const RunPlan& plan) const {
    return position.step % options.log_every == 0 || position.step == plan.limit;
  }
  bool ReadDue(const RunPlan& plan) const;
  absl::StatusOr<bool> ReadIterations(const RunPlan& plan, RunProgress& progress);
  void PublishIteration(const RunPlan& plan, RunProgress& progress, StepReport& report,
                        bool log_step);
  absl::Status MeasureMaskOverlap(StepReport& report);
  absl::Status WritePeriodicOutputs(const RunPlan& plan);
  // Whether an evaluation during training is due at `position`: at an epoch
  // boundary (the start included) every eval_every_epochs epochs.
  bool EvaluationDue() const {
    return options.eval_enabled && options.eval_every_epochs > 0 && position.batch_in_epoch == 0 &&
           position.epoch % options.eval_every_epochs == 0;
  }
  absl::Status EvaluateDuringTraining(const RunPlan& plan, RunProgress& progress);
  // Whether `position` is an accumulation boundary before the end of the
  // run: a state that a checkpoint resumes exactly.
  bool AtResumablePoint(const RunPlan& plan) const {
    return position.step % options.step.accum_iter == 0 && position.step < plan.limit;
  }
  absl::Status StopOnRequest(const RunPlan& plan);

  absl::Status SaveCheckpoint(int64_t step);
  absl::Status WritePreviewAt(int64_t step);
  void ReportDecoding();
  absl::Status Finish();
  void LogJson(const StepReport& r);
  void LogQuality(const QualityReport& q);
  absl::Status WriteEvalJson(const EvalResult& r);
};

Trainer::Trainer(std::unique_ptr<State> state) : state_(std::move(state)) {}
Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& in,
                                                         Collectives* collectives,
                                                         TrainObserver* observer) {
  TrainerOptions options = in;
  options.transform.size = options.model.img_size;
  RETURN_IF_ERROR(ValidateOptions(options));
  auto s = std::make_unique<State>();
  s->options = options;
  if (collectives == nullptr) {
    s->owned_collectives = std::make_unique<LocalCollectives>();
    collectives = s->owned_collectives.get();
  }
  s->collectives = collectives;
  s->observer = observer != nullptr ? observer : &s->null_observer;
  RETURN_IF_ERROR(s->SelectDevice());
  RETURN_IF_ERROR(s->OpenData());
  RETURN_IF_ERROR(s->OpenEvalData());
  RETURN_IF_ERROR(s->BuildNetworks());
  RETURN_IF_ERROR(s->ResumeIfAsked());
  s->step_runner =
      std::make_unique<TwoPhaseStep>(s->mae, s->masker, s->mae_optimizer.get(),
                                     s->masker_optimizer.get(), collectives, options.step);
  RETURN_IF_ERROR(s->PrepareOutputs());
  return std::unique_ptr<Trainer>(new Trainer(std::move(s)));
}

// Parses options.device into `device` (BF16 needs CUDA) and applies
// options.threads to LibTorch.
absl::Status Trainer::State::SelectDevice() {
  ASSIGN_OR_RETURN(device, ParseDevice(options.device));
  if (options.step.bf16 && !device.is_cuda()) {
    return absl::InvalidArgumentError("train.precision BF16 needs a CUDA device (train.device)");
  }
  if (options.threads > 0) torch::set_num_threads(options.threads);
  return absl::OkStatus();
}

// Opens `dataset` (checking its channels against the model) and builds
// `loader` over this rank's share; INVALID_ARGUMENT when that share holds
// less than one batch.
absl::Status Trainer::State::OpenData() {
  ASSIGN_OR_RETURN(dataset, OpenLimited(options.data, options.data_limit));
  if (dataset->channels() != options.model.in_chans) {
    return absl::InvalidArgumentError(absl::StrCat("model.in_chans is ", options.model.in_chans,
                                                   " but ", dataset->Describe(), " has ",
                                                   dataset->channels(), "-channel images"));
  }
  DataLoaderOptions loader_options = options.loader;
  loader_options.seed = options.step.seed;
  loader_options.pin_memory = device.is_cuda();
  if (loader_options.decode_device.is_cuda()) {
    // Decoding on the GPU means on this rank's training device.
    if (!device.is_cuda()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.decode GPU needs a CUDA training device; train.device is ", device.str()));
    }
    loader_options.decode_device = device;
  }
  DistributedSampler sampler(dataset->size(), collectives->rank(), collectives->world_size(),
                             options.step.seed);
  loader = std::make_unique<DataLoader>(dataset, sampler, options.transform, loader_options);
  if (loader->batches_per_epoch() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train.batch_size (", options.loader.batch_size, ") is larger than this rank's share (",
        sampler.num_samples(), " images) of ", dataset->Describe()));
  }
  return absl::OkStatus();
}

// Rank 0 with eval_enabled: opens the evaluation splits now, so that a
// missing or unlabelled dataset fails the run before it trains rather than
// after. FAILED_PRECONDITION when a split has no labels, INVALID_ARGUMENT
// when its images do not fit the model.
absl::Status Trainer::State::OpenEvalData() {
  if (!is_rank0() || !options.eval_enabled) return absl::OkStatus();
  ASSIGN_OR_RETURN(eval_train_set, OpenLimited(options.eval_train, 0));
  ASSIGN_OR_RETURN(eval_test_set, OpenLimited(options.eval_test, 0));
  for (const auto* split : {eval_train_set.get(), eval_test_set.get()}) {
    if (split->num_classes() <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("eval: ", split->Describe(), " has no labels; k-NN needs labelled data"));
    }
    if (split->channels() != options.model.in_chans) {
      return absl::InvalidArgumentError(
          absl::StrCat("eval: model.in_chans is ", options.model.in_chans, " but ",
                       split->Describe(), " has ", split->channels(), "-channel images"));
    }
  }
  return absl::OkStatus();
}

// Builds the networks on `device` (seeded, optionally from
// options.init_from), makes every rank's weights rank 0's, and creates the
// optimizers. LibTorch exceptions become errors.
absl::Status Trainer::State::BuildNetworks() {
  return CatchAll("building the networks", [&]() -> absl::Status {
    torch::manual_seed(options.step.seed);  // identical initial weights on every rank
    mae = MaeVit(options.model);
    if (!options.plain_mae) masker = MaskingNet(options.model);
    if (!options.init_from.empty()) {
      ASSIGN_OR_RETURN(auto tensors, ReadSafetensors(options.init_from));
      auto status = LoadWeights(tensors, mae, masker);
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("train.init_from ", options.init_from, ": ", status.message()));
      }
    }
    mae->to(device);
    if (!masker.is_empty()) masker->to(device);
    // Replicas start equal: rank 0's weights win.
    RETURN_IF_ERROR(collectives->Broadcast(AllParameters()));
    mae_optimizer = MakeAdamW(*mae, options.optim);
    if (!masker.is_empty()) masker_optimizer = MakeAdamW(*masker, options.optim);
    return absl::OkStatus();
  });
}

// Sets `position` to the start of training, or, when options.resume_from
// names a checkpoint ("auto": the newest in output_dir), loads it: its seed
// and world size must match the job's, and every rank must hold the same
// weights afterwards.
absl::Status Trainer::State::ResumeIfAsked() {
  position.seed = options.step.seed;
  position.world_size = collectives->world_size();
  position.spec = options.spec_text;
  std::string resume = options.resume_from;
  if (resume == "auto") resume = FindLatestCheckpoint(options.output_dir);
  if (resume.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(TrainPosition pos, LoadCheckpoint(resume, refs()));
  if (pos.seed != options.step.seed) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", resume, " was trained with seed ",
                                                   pos.seed, ", the job has ", options.step.seed));
  }
  if (pos.world_size != collectives->world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", resume, " was written by ", pos.world_size,
        " ranks; resuming needs the same world size, got ", collectives->world_size()));
  }
  pos.spec = options.spec_text;
  position = pos;
  last_checkpoint = resume;
  // Every rank must have resumed from the same state.
  RETURN_IF_ERROR(CheckReplicasIdentical(*collectives, AllParameters(),
                                         absl::StrCat("after resuming from ", resume))
                      .status());
  observer->OnMessage(absl::StrCat("resumed from ", resume, " at step ", pos.step));
  return absl::OkStatus();
}

// Rank 0: creates output_dir/checkpoints, opens metrics.jsonl for appending
// and picks the preview images (PERMISSION_DENIED when the folder or the log
// cannot be written). CL-MAE mode, every rank: picks the mask-overlap images.
absl::Status Trainer::State::PrepareOutputs() {
  if (is_rank0()) {
    std::error_code ec;
    fs::create_directories(fs::path(options.output_dir) / "checkpoints", ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("output.dir ", options.output_dir, ": ", ec.message()));
    }
    jsonl.open(fs::path(options.output_dir) / "metrics.jsonl", std::ios::app);
    if (!jsonl)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", options.output_dir, "/metrics.jsonl"));
    if (options.preview_every > 0) {
      ASSIGN_OR_RETURN(preview_images, FixedImages(options, *dataset, options.preview_images));
    }
  }
  if (!masker.is_empty()) {
    ASSIGN_OR_RETURN(overlap_images, FixedImages(options, *dataset, kOverlapImages));
    overlap_images = overlap_images.to(device);
  }
  return absl::OkStatus();
}

absl::Status Trainer::State::SaveCheckpoint(int64_t step) {
  if (!is_rank0()) return absl::OkStatus();
  const auto path = (fs::path(options.output_dir) / "checkpoints" / CheckpointName(step)).string();
  RETURN_IF_ERROR(clmae::SaveCheckpoint(path, refs(), position));
  last_checkpoint = path;
  observer->OnCheckpoint(path, step);
  auto all = ListCheckpoints(options.output_dir);
  for (size_t i = 0; i + options.keep_checkpoints < all.size(); ++i) {
    if (!observer->MayDeleteCheckpoint(all[i].string())) continue;
    std::error_code ec;
    fs::remove(all[i], ec);
  }
  return absl::OkStatus();
}

absl::Status Trainer::State::WritePreviewAt(int64_t step) {
  if (!is_rank0() || !preview_images.defined()) return absl::OkStatus();
  PreviewOptions p;
  p.mask_ratio = options.step.mask_ratio;
  p.mean = options.transform.mean;
  p.std = options.transform.std;
  p.seed = options.step.seed;
  const auto path =
      (fs::path(options.output_dir) / "previews" / absl::StrFormat("step-%09d.png", step)).string();
  RETURN_IF_ERROR(WritePreview(path, mae, masker, preview_images, p));
  observer->OnExport("preview", path, step);
  return absl::OkStatus();
}

void Trainer::State::LogJson(const StepReport& r) {
  if (!jsonl.is_open()) return;
  const auto& s = r.stats;
  jsonl << absl::StrFormat(
      "{\"step\":%d,\"epoch\":%d,\"lambda_cl\":%.6g,\"lr\":%.6g,\"loss_mae\":%.6g,"
      "\"masker_rec\":%.6g,\"masker_gauss\":%.6g,\"masker_kl\":%.6g,\"masker_div\":%.6g,"
      "\"masker_total\":%.6g,\"mask_mean_score\":%.6g,\"mask_near_binary\":%.6g,"
      "\"grad_norm_mae\":%.6g,\"grad_norm_masker\":%.6g,\"data_s\":%.6g,\"phase_a_s\":%.6g,"
      "\"phase_b_s\":%.6g,\"optimizer_s\":%.6g,\"comm_wait_s\":%.6g,\"step_s\":%.6g}\n",
      r.step, r.epoch, r.lambda_cl, r.lr, s.loss_mae, s.masker_rec, s.masker_gauss, s.masker_kl,
      s.masker_div, s.masker_total, s.mask_mean_score, s.mask_near_binary, s.grad_norm_mae,
      s.grad_norm_masker, r.data_seconds, s.phase_a_seconds, s.phase_b_seconds, s.optimizer_seconds,
      s.comm_wait_seconds, r.step_seconds);
  jsonl.flush();
}

void Trainer::State::LogQuality(const QualityReport& q) {
  if (!jsonl.is_open()) return;
  jsonl << absl::StrFormat(
      "{\"event\":\"eval\",\"step\":%d,\"epoch\":%.6g,\"lambda_cl\":%.6g,\"knn_top1\":%.6f,"
      "\"knn_top1_patch_mean\":%.6f,\"train_images\":%d,\"test_images\":%d,\"seconds\":%.3f}\n",
      q.step, q.epoch, q.lambda_cl, q.knn_top1, q.knn_top1_patch_mean, q.train_images,
      q.test_images, q.seconds);
  jsonl.flush();
}

// What the loader could not decode (skipped images) and, decoding on the
// GPU, how many images went to the host decoder instead; nothing when all
// is well.
void Trainer::State::ReportDecoding() {
  if (const int64_t skipped = loader->skipped_images(); skipped > 0) {
    observer->OnMessage(absl::StrCat(
        "data: ", skipped,
        " image(s) could not be decoded and were skipped (data.fail_on_decode_error makes that "
        "an error)"));
  }
  if (!loader->gpu_decoding().empty()) {
    observer->OnMessage(absl::StrCat("JPEG decoding: ", loader->images_decoded_on_device(),
                                     " images on ", device.str(), ", ",
                                     loader->images_decoded_on_host(),
                                     " on the host (PNG, CMYK, grey, or not taken by nvJPEG)"));
  }
}

absl::Status Trainer::State::Finish() {
  observer->OnPhase("finish");
  ASSIGN_OR_RETURN(
      const uint64_t fingerprint,
      CheckReplicasIdentical(*collectives, AllParameters(),
                             absl::StrCat("at the end of training (step ", position.step, ")")));
  if (collectives->world_size() > 1 && is_rank0()) {
    observer->OnMessage(
        absl::StrFormat("replicas identical on all %d ranks (weight fingerprint %016x)",
                        collectives->world_size(), fingerprint));
  }
  ReportDecoding();
  RETURN_IF_ERROR(SaveCheckpoint(position.step));
  if (options.preview_every > 0) RETURN_IF_ERROR(WritePreviewAt(position.step));
  if (is_rank0() && options.export_safetensors) {
    const std::map<std::string, std::string> meta = {
        {"format", "pt"}, {"producer", "clmae"}, {"step", std::to_string(position.step)}};
    const auto weights = (fs::path(options.output_dir) / "weights.safetensors").string();
    RETURN_IF_ERROR(WriteSafetensors(weights, NamedWeights(mae, masker, WeightSet::kAll), meta));
    observer->OnExport("weights", weights, position.step);
    const auto encoder = (fs::path(options.output_dir) / "encoder.safetensors").string();
    RETURN_IF_ERROR(
        WriteSafetensors(encoder, NamedWeights(mae, masker, WeightSet::kEncoder), meta));
    observer->OnExport("encoder", encoder, position.step);
  }
  if (is_rank0() && options.eval_enabled) {
    const TransformOptions t = EvalTransform(options);
    EvalOptions e = options.eval;
    e.seed = options.step.seed;
    ASSIGN_OR_RETURN(EvalResult result, Evaluate(mae, *eval_train_set, *eval_test_set, t, e));
    RETURN_IF_ERROR(AddBaselines(options.model, options.step.seed, device, *eval_train_set,
                                 *eval_test_set, t, e, result));
    eval_result = result;
    RETURN_IF_ERROR(WriteEvalJson(result));
    observer->OnEvaluation(result);
  }
  return absl::OkStatus();
}

namespace {

std::string JsonNumberOrNull(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.6f", v) : std::string("null");
}

}  // namespace

// output_dir/eval.json (atomically): the final evaluation and its baselines.
absl::Status Trainer::State::WriteEvalJson(const EvalResult& r) {
  const std::string text = absl::StrFormat(
      "{\"knn_k\":%d,\"knn_top1\":%s,\"knn_top1_patch_mean\":%s,\"probe_top1\":%s,"
      "\"raw_pixels_knn_top1\":%s,\"random_init_knn_top1\":%s,"
      "\"random_init_knn_top1_patch_mean\":%s,\"train_images\":%d,\"test_images\":%d}\n",
      options.eval.knn_k, JsonNumberOrNull(r.knn_top1), JsonNumberOrNull(r.knn_top1_patch_mean),
      JsonNumberOrNull(r.probe_top1), JsonNumberOrNull(r.raw_pixels_knn_top1),
      JsonNumberOrNull(r.random_init_knn_top1), JsonNumberOrNull(r.random_init_knn_top1_patch_mean),
      r.train_images, r.test_images);
  return WriteFileAtomically((fs::path(options.output_dir) / "eval.json").string(), text);
}

// Rank 0 measures the current encoder's k-NN quality on the periodic subset
// (observer: OnQuality, metrics.jsonl: an "eval" line) while every rank
// reports phase "eval" and waits for it at a barrier, so no rank looks hung.
// Its time does not count in the images/s of the log window.
absl::Status Trainer::State::EvaluateDuringTraining(const RunPlan& plan, RunProgress& progress) {
  const auto t0 = Clock::now();
  observer->OnPhase("eval");
  if (is_rank0()) {
    EvalOptions e = options.eval_periodic;
    e.probe_epochs = 0;
    ASSIGN_OR_RETURN(EvalResult r,
                     Evaluate(mae, *eval_train_set, *eval_test_set, EvalTransform(options), e));
    QualityReport q;
    q.step = position.step;
    q.epoch = FractionalEpoch(plan.per_epoch);
    q.lambda_cl = plan.curriculum.Value(position.epoch, position.step);
    q.knn_top1 = r.knn_top1;
    q.knn_top1_patch_mean = r.knn_top1_patch_mean;
    q.train_images = r.train_images;
    q.test_images = r.test_images;
    q.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    LogQuality(q);
    observer->OnQuality(q);
  }
  RETURN_IF_ERROR(collectives->Barrier());
  progress.window_start += Clock::now() - t0;
  observer->OnPhase("train");
  return absl::OkStatus();
}

absl::Status Trainer::Run() {
  State& s = *state_;
  const RunPlan plan = s.PlanRun();
  RunProgress progress = s.StartRun(plan);
  if (s.EvaluationDue()) RETURN_IF_ERROR(s.EvaluateDuringTraining(plan, progress));
  while (s.position.step < plan.limit) {
    RETURN_IF_ERROR(s.TrainIteration(plan, progress));
    // The device runs ahead; the host reads what it computed only where
    // something depends on it (a log line, a checkpoint, an evaluation, a
    // stop), on the same iterations on every rank.
    if (!s.ReadDue(plan)) continue;
    ASSIGN_OR_RETURN(const bool stop, s.ReadIterations(plan, progress));
    s.stopping = s.stopping || stop;
    RETURN_IF_ERROR(s.WritePeriodicOutputs(plan));
    if (s.EvaluationDue()) RETURN_IF_ERROR(s.EvaluateDuringTraining(plan, progress));
    // Stop on request at an accumulation boundary (a resumable state), after
    // a checkpoint there.
    if (s.stopping && s.AtResumablePoint(plan)) return s.StopOnRequest(plan);
  }
  return s.Finish();
}

// The iteration budget (epochs, capped by max_steps), the learning-rate
// schedule (peak from blr and the effective batch unless lr is set) and the
// curriculum. No side effects.
RunPlan Trainer::State::PlanRun() const {
  const auto& o = options;
  const int64_t per_epoch = loader->batches_per_epoch();
  const int64_t planned = per_epoch * o.epochs;
  const int64_t limit = o.max_steps > 0 ? std::min(planned, o.max_steps) : planned;
  const int world = collectives->world_size();
  const int64_t effective_batch =
      static_cast<int64_t>(o.loader.batch_size) * o.step.accum_iter * world;
  LrScheduleOptions lr_options;
  lr_options.lr = o.lr.value_or(ScaledLearningRate(o.blr, effective_batch));
  lr_options.min_lr = o.min_lr;
  lr_options.warmup_epochs = o.warmup_epochs;
  lr_options.epochs = o.epochs;
  return RunPlan{.per_epoch = per_epoch,
                 .limit = limit,
                 .world = world,
                 .effective_batch = effective_batch,
                 .lr_options = lr_options,
                 .curriculum = CurriculumSchedule(o.curriculum, o.epochs, planned)};
}

// Announces the run to the observer (OnStart, a summary line), puts the
// networks in training mode and the loader at `position`; returns the
// progress counters, with the log window starting now.
RunProgress Trainer::State::StartRun(const RunPlan& plan) {
  observer->OnStart(position.step, plan.limit);
  observer->OnMessage(absl::StrFormat(
      "%s on %s: %s, %d iterations/epoch, %d epochs, peak lr %.3g (effective batch %d)",
      masker.is_empty() ? "plain MAE" : "CL-MAE", device.str(), dataset->Describe(), plan.per_epoch,
      options.epochs, plan.lr_options.lr, plan.effective_batch));
  if (const std::string gpu = loader->gpu_decoding(); !gpu.empty()) {
    observer->OnMessage(absl::StrCat("JPEG decoding and augmentation: ", gpu));
  }
  if (options.step.cuda_graphs) {
    const std::string off = step_runner->graphs_off_reason(device);
    observer->OnMessage(off.empty() ? "CUDA graphs: each iteration replays one captured graph "
                                      "(after 3 eager warm-up iterations)"
                                    : absl::StrCat("CUDA graphs not used: ", off));
  }

  mae->train();
  if (!masker.is_empty()) masker->train();
  loader->StartEpoch(position.epoch, position.batch_in_epoch);
  RunProgress progress;
  progress.lr = LearningRateAt(plan.lr_options, FractionalEpoch(plan.per_epoch));
  progress.window_start = Clock::now();
  progress.window_images = 0;
  progress.images_seen = position.step * options.loader.batch_size * plan.world;
  return progress;
}

// Queues one iteration on the next batch: sets the learning rate at an
// accumulation boundary, runs the two-phase step and advances `position`
// and the image counters of `progress`. Its report (without the step's
// figures, which the device is still computing) joins `unread`. Errors:
// INTERNAL when the loader ends early, a failed step's code (see
// TrainingStopped).
absl::Status Trainer::State::TrainIteration(const RunPlan& plan, RunProgress& progress) {
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(std::optional<Batch> batch, loader->Next());
  if (!batch.has_value()) {
    return absl::InternalError(absl::StrCat("the data loader ended epoch ", position.epoch,
                                            " after ", position.batch_in_epoch, " of ",
                                            plan.per_epoch, " batches"));
  }
  auto imgs = batch->images.to(device, /*non_blocking=*/true);
  const double data_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  const int64_t step = position.step;
  if (step % options.step.accum_iter == 0) {
    progress.lr = LearningRateAt(plan.lr_options, FractionalEpoch(plan.per_epoch));
    SetLearningRate(*mae_optimizer, progress.lr);
    if (masker_optimizer) SetLearningRate(*masker_optimizer, progress.lr);
  }
  const bool apply = (step + 1) % options.step.accum_iter == 0 || step + 1 == plan.limit;
  const double lambda_cl = plan.curriculum.Value(position.epoch, step);
  auto pending = step_runner->Run(imgs, lambda_cl, step, apply, batch->indices);
  if (!pending.ok()) return TrainingStopped(pending.status());
  AdvancePosition(plan);
  const int64_t images = batch->images.size(0) * plan.world;
  progress.images_seen += images;
  progress.window_images += images;

  Unread u;
  u.report.step = position.step;
  u.report.total_steps = plan.limit;
  u.report.epoch = position.epoch;
  u.report.epochs = options.epochs;
  u.report.lambda_cl = lambda_cl;
  u.report.lr = progress.lr;
  u.report.data_seconds = data_seconds;
  u.report.images_seen = progress.images_seen;
  u.step = std::move(*pending);
  unread.push_back(std::move(u));
  return absl::OkStatus();
}

// Whether the queued iterations must be read at `position`: a log step, a
// checkpoint, a preview or an evaluation due, a stop at a resumable point,
// or kMaxUnreadIterations queued. The same answer on every rank.
bool Trainer::State::ReadDue(const RunPlan& plan) const {
  const auto& o = options;
  const int64_t step = position.step;
  return LogStep(plan) || unread.size() >= kMaxUnreadIterations ||
         (o.checkpoint_every > 0 && AtResumablePoint(plan) && step % o.checkpoint_every == 0) ||
         (o.preview_every > 0 && step % o.preview_every == 0) || EvaluationDue() ||
         (stopping && AtResumablePoint(plan));
}

// Waits for the device, checks that nothing non-finite was met, and reads
// the queued iterations' figures; one collective then averages their losses
// over ranks and carries the stop request and every rank's finiteness.
// Each iteration is then published in order (metrics.jsonl, observer).
// Returns true when any rank was asked to stop (on every rank at the same
// step). A non-finite value on any rank stops every rank with
// FAILED_PRECONDITION (see TrainingStopped); no checkpoint follows it.
absl::StatusOr<bool> Trainer::State::ReadIterations(const RunPlan& plan, RunProgress& progress) {
  std::vector<PendingStep> steps;
  steps.reserve(unread.size());
  for (auto& u : unread) steps.push_back(std::move(u.step));
  absl::Status finite = absl::OkStatus();
  std::vector<StepStats> stats;
  const absl::Status read =
      CatchAll(absl::StrCat("reading the figures of step ", position.step), [&]() -> absl::Status {
        finite = step_runner->CheckFinite();  // waits for the device
        stats = TwoPhaseStep::Read(steps);
        return absl::OkStatus();
      });
  if (!read.ok()) return TrainingStopped(read);
  const bool asked_to_stop = options.stop_requested != nullptr && options.stop_requested->load();
  constexpr int kLogged = 6;  // loss_mae .. masker_total
  std::vector<double> values;
  values.reserve(stats.size() * kLogged + 2);
  for (const auto& st : stats) {
    values.insert(values.end(), {st.loss_mae, st.masker_rec, st.masker_gauss, st.masker_kl,
                                 st.masker_div, st.masker_total});
  }
  values.push_back(asked_to_stop ? 1.0 : 0.0);
  values.push_back(finite.ok() ? 0.0 : 1.0);
  RETURN_IF_ERROR(collectives->AverageScalars(values));
  if (values.back() > 0) {
    if (finite.ok()) {
      finite = absl::FailedPreconditionError(
          absl::StrCat("another rank met a non-finite loss or gradient norm by step ",
                       position.step, "; no optimizer step was applied from then on"));
    }
    unread.clear();
    return TrainingStopped(finite);
  }
  const bool stop = values[values.size() - 2] > 0;
  for (size_t i = 0; i < unread.size(); ++i) {
    StepReport& report = unread[i].report;
    report.stats = stats[i];
    const double* avg = &values[i * kLogged];
    report.stats.loss_mae = avg[0];
    report.stats.masker_rec = avg[1];
    report.stats.masker_gauss = avg[2];
    report.stats.masker_kl = avg[3];
    report.stats.masker_div = avg[4];
    report.stats.masker_total = avg[5];
    report.step_seconds = report.data_seconds + stats[i].device_seconds;
    const bool log_step = i + 1 == unread.size() && LogStep(plan);
    if (log_step) RETURN_IF_ERROR(MeasureMaskOverlap(report));
    PublishIteration(plan, progress, report, log_step);
  }
  unread.clear();
  return stop;
}
// A failed step's `cause` as Run returns it: the same code, the message
// prefixed "training stopped: " and naming the last good checkpoint.
absl::Status Trainer::State::TrainingStopped(const absl::Status& cause) const {
  return absl::Status(
      cause.code(), absl::StrCat("training stopped: ", cause.message(),
                                 last_checkpoint.empty()
                                     ? std::string("; no checkpoint was written")
                                     : absl::StrCat("; last good checkpoint: ", last_checkpoint)));
}

// Counts one iteration done in `position`; after an epoch's last batch moves
// to the next epoch and, unless the run ends there, starts it in the loader.
void Trainer::State::AdvancePosition(const RunPlan& plan) {
  ++position.step;
  if (++position.batch_in_epoch == plan.per_epoch) {
    ++position.epoch;
    position.batch_in_epoch = 0;
    if (position.step < plan.limit) loader->StartEpoch(position.epoch, 0);
  }
}

// Appends `report` to metrics.jsonl, then hands it to the observer:
// OnIteration for every iteration; at logged iterations (every log_every and
// the last) OnStep too, with the images/s of the log window, which then
// restarts.
void Trainer::State::PublishIteration(const RunPlan& plan, RunProgress& progress,
                                      StepReport& report, bool log_step) {
  LogJson(report);
  observer->OnIteration(report);
  if (log_step) {
    const double secs = std::chrono::duration<double>(Clock::now() - progress.window_start).count();
    report.images_per_second = secs > 0 ? progress.window_images / secs : 0;
    progress.window_start = Clock::now();
    progress.window_images = 0;
    observer->OnStep(report);
  }
}

// CL-MAE mode: sets report.mask_overlap (from the second call on) to the
// share of the overlap images' kept patches also kept at the previous call,
// and remembers this call's. INTERNAL when LibTorch throws.
absl::Status Trainer::State::MeasureMaskOverlap(StepReport& report) {
  if (!overlap_images.defined()) return absl::OkStatus();
  try {
    torch::Tensor kept = step_runner->KeptPatches(overlap_images);
    if (last_kept.defined()) {
      report.mask_overlap =
          (kept & last_kept).sum().item<double>() / std::max<double>(1, kept.sum().item<double>());
    }
    last_kept = kept;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("mask overlap at step ", report.step, ": ", e.what()));
  }
  return absl::OkStatus();
}

// After an iteration, before the end of the run: the checkpoint due every
// checkpoint_every iterations (at accumulation boundaries only) and the
// preview due every preview_every iterations.
absl::Status Trainer::State::WritePeriodicOutputs(const RunPlan& plan) {
  const auto& o = options;
  if (o.checkpoint_every > 0 && AtResumablePoint(plan) && position.step % o.checkpoint_every == 0) {
    RETURN_IF_ERROR(SaveCheckpoint(position.step));
  }
  if (o.preview_every > 0 && position.step % o.preview_every == 0 && position.step < plan.limit) {
    RETURN_IF_ERROR(WritePreviewAt(position.step));
  }
  return absl::OkStatus();
}

// Ends the run on a stop request at a resumable point: writes a checkpoint
// there unless WritePeriodicOutputs just did, then returns CANCELLED (naming
// the checkpoint on rank 0), or the error of writing it.
absl::Status Trainer::State::StopOnRequest(const RunPlan& plan) {
  if (!(options.checkpoint_every > 0 && position.step % options.checkpoint_every == 0)) {
    RETURN_IF_ERROR(SaveCheckpoint(position.step));
  }
  return absl::CancelledError(
      absl::StrCat("stopped on request at step ", position.step, " of ", plan.limit,
                   is_rank0() ? absl::StrCat("; checkpoint ", last_checkpoint) : std::string()));
}

const std::optional<EvalResult>& Trainer::eval_result() const { return state_->eval_result; }
int64_t Trainer::step() const { return state_->position.step; }
MaeVit& Trainer::mae() { return state_->mae; }
MaskingNet& Trainer::masker() { return state_->masker; }
const std::string& Trainer::last_checkpoint() const { return state_->last_checkpoint; }

std::string FindLatestCheckpoint(const std::string& output_dir) {
  auto all = ListCheckpoints(output_dir);
  return all.empty() ? std::string() : all.back().string();
}

}  // namespace clmae
