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
#include "worker/engine/dist/replica_check.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/lr_schedule.h"
#include "worker/engine/train/preview.h"
#include "worker/engine/train/safetensors.h"
#include "worker/engine/train/weights.h"
#include "worker/engine/util/json.h"
#include "worker/engine/util/status_macros.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kCheckpointPrefix[] = "step-";
// Images whose kept masks are compared between log steps (mask overlap).
constexpr int64_t kOverlapImages = 8;
constexpr char kCheckpointSuffix[] = ".ckpt";

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

// The first `count` images of the dataset (fewer if it is smaller) under the
// evaluation transform, stacked on the CPU: previews and mask overlap.
absl::StatusOr<torch::Tensor> FixedImages(const TrainerOptions& options, const Dataset& dataset,
                                          int64_t count) {
  TransformOptions eval = options.transform;
  eval.kind = TransformOptions::Kind::kEval;
  eval.crop_fraction = 1.0;
  std::vector<torch::Tensor> imgs;
  SampleRng rng(0, 0);
  for (int64_t i = 0; i < std::min<int64_t>(count, dataset.size()); ++i) {
    ASSIGN_OR_RETURN(Example ex, dataset.Get(i));
    imgs.push_back(ApplyTransform(eval, ex.image, rng));
  }
  return torch::stack(imgs);
}

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
  std::unique_ptr<DataLoader> loader;
  std::unique_ptr<TwoPhaseStep> step_runner;
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
  absl::Status SaveCheckpoint(int64_t step);
  absl::Status WritePreviewAt(int64_t step);
  absl::Status Finish();
  void LogJson(const StepReport& r);
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
  ASSIGN_OR_RETURN(s->device, ParseDevice(options.device));
  if (options.step.bf16 && !s->device.is_cuda()) {
    return absl::InvalidArgumentError("train.precision BF16 needs a CUDA device (train.device)");
  }
  if (options.threads > 0) torch::set_num_threads(options.threads);

  ASSIGN_OR_RETURN(s->dataset, OpenLimited(options.data, options.data_limit));
  if (s->dataset->channels() != options.model.in_chans) {
    return absl::InvalidArgumentError(absl::StrCat("model.in_chans is ", options.model.in_chans,
                                                   " but ", s->dataset->Describe(), " has ",
                                                   s->dataset->channels(), "-channel images"));
  }
  DataLoaderOptions loader_options = options.loader;
  loader_options.seed = options.step.seed;
  loader_options.pin_memory = s->device.is_cuda();
  DistributedSampler sampler(s->dataset->size(), collectives->rank(), collectives->world_size(),
                             options.step.seed);
  s->loader = std::make_unique<DataLoader>(s->dataset, sampler, options.transform, loader_options);
  if (s->loader->batches_per_epoch() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train.batch_size (", options.loader.batch_size, ") is larger than this rank's share (",
        sampler.num_samples(), " images) of ", s->dataset->Describe()));
  }

  RETURN_IF_ERROR(CatchAll("building the networks", [&]() -> absl::Status {
    torch::manual_seed(options.step.seed);  // identical initial weights on every rank
    s->mae = MaeVit(options.model);
    if (!options.plain_mae) s->masker = MaskingNet(options.model);
    if (!options.init_from.empty()) {
      ASSIGN_OR_RETURN(auto tensors, ReadSafetensors(options.init_from));
      auto status = LoadWeights(tensors, s->mae, s->masker);
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("train.init_from ", options.init_from, ": ", status.message()));
      }
    }
    s->mae->to(s->device);
    if (!s->masker.is_empty()) s->masker->to(s->device);
    // Replicas start equal: rank 0's weights win.
    RETURN_IF_ERROR(s->collectives->Broadcast(s->AllParameters()));
    s->mae_optimizer = MakeAdamW(*s->mae, options.optim);
    if (!s->masker.is_empty()) s->masker_optimizer = MakeAdamW(*s->masker, options.optim);
    return absl::OkStatus();
  }));

  s->position.seed = options.step.seed;
  s->position.world_size = collectives->world_size();
  s->position.spec = options.spec_text;
  std::string resume = options.resume_from;
  if (resume == "auto") resume = FindLatestCheckpoint(options.output_dir);
  if (!resume.empty()) {
    ASSIGN_OR_RETURN(TrainPosition pos, LoadCheckpoint(resume, s->refs()));
    if (pos.seed != options.step.seed) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", resume,
                                                     " was trained with seed ", pos.seed,
                                                     ", the job has ", options.step.seed));
    }
    if (pos.world_size != collectives->world_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint ", resume, " was written by ", pos.world_size,
          " ranks; resuming needs the same world size, got ", collectives->world_size()));
    }
    pos.spec = options.spec_text;
    s->position = pos;
    s->last_checkpoint = resume;
    // Every rank must have resumed from the same state.
    RETURN_IF_ERROR(CheckReplicasIdentical(*collectives, s->AllParameters(),
                                           absl::StrCat("after resuming from ", resume))
                        .status());
    s->observer->OnMessage(absl::StrCat("resumed from ", resume, " at step ", pos.step));
  }
  s->step_runner =
      std::make_unique<TwoPhaseStep>(s->mae, s->masker, s->mae_optimizer.get(),
                                     s->masker_optimizer.get(), collectives, options.step);

  if (s->is_rank0()) {
    std::error_code ec;
    fs::create_directories(fs::path(options.output_dir) / "checkpoints", ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("output.dir ", options.output_dir, ": ", ec.message()));
    }
    s->jsonl.open(fs::path(options.output_dir) / "metrics.jsonl", std::ios::app);
    if (!s->jsonl)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", options.output_dir, "/metrics.jsonl"));
    if (options.preview_every > 0) {
      ASSIGN_OR_RETURN(s->preview_images,
                       FixedImages(options, *s->dataset, options.preview_images));
    }
  }
  if (!s->masker.is_empty()) {
    ASSIGN_OR_RETURN(s->overlap_images, FixedImages(options, *s->dataset, kOverlapImages));
    s->overlap_images = s->overlap_images.to(s->device);
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(s)));
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
    ASSIGN_OR_RETURN(auto train, OpenLimited(options.eval_train, 0));
    ASSIGN_OR_RETURN(auto test, OpenLimited(options.eval_test, 0));
    TransformOptions t = options.transform;
    t.kind = TransformOptions::Kind::kEval;
    t.crop_fraction = 1.0;
    EvalOptions e = options.eval;
    e.seed = options.step.seed;
    ASSIGN_OR_RETURN(eval_result, Evaluate(mae, *train, *test, t, e));
    observer->OnEvaluation(*eval_result);
    std::ofstream out(fs::path(options.output_dir) / "eval.json");
    out << absl::StrFormat(
        "{\"knn_k\":%d,\"knn_top1\":%.6f,\"probe_top1\":%s,\"train_images\":%d,\"test_images\":%d}"
        "\n",
        e.knn_k, eval_result->knn_top1,
        std::isnan(eval_result->probe_top1) ? "null"
                                            : absl::StrFormat("%.6f", eval_result->probe_top1),
        eval_result->train_images, eval_result->test_images);
  }
  return absl::OkStatus();
}

absl::Status Trainer::Run() {
  State& s = *state_;
  const auto& o = s.options;
  const int64_t per_epoch = s.loader->batches_per_epoch();
  const int64_t planned = per_epoch * o.epochs;
  const int64_t limit = o.max_steps > 0 ? std::min(planned, o.max_steps) : planned;
  const int world = s.collectives->world_size();
  const int64_t effective_batch =
      static_cast<int64_t>(o.loader.batch_size) * o.step.accum_iter * world;
  LrScheduleOptions lr_options;
  lr_options.lr = o.lr.value_or(ScaledLearningRate(o.blr, effective_batch));
  lr_options.min_lr = o.min_lr;
  lr_options.warmup_epochs = o.warmup_epochs;
  lr_options.epochs = o.epochs;
  CurriculumSchedule curriculum(o.curriculum, o.epochs, planned);
  s.observer->OnStart(s.position.step, limit);
  s.observer->OnMessage(absl::StrFormat(
      "%s on %s: %s, %d iterations/epoch, %d epochs, peak lr %.3g (effective batch %d)",
      s.masker.is_empty() ? "plain MAE" : "CL-MAE", s.device.str(), s.dataset->Describe(),
      per_epoch, o.epochs, lr_options.lr, effective_batch));

  s.mae->train();
  if (!s.masker.is_empty()) s.masker->train();
  s.loader->StartEpoch(s.position.epoch, s.position.batch_in_epoch);
  double lr = LearningRateAt(
      lr_options, s.position.epoch + static_cast<double>(s.position.batch_in_epoch) / per_epoch);
  auto window_start = Clock::now();
  int64_t window_images = 0;
  int64_t images_seen = s.position.step * o.loader.batch_size * world;

  while (s.position.step < limit) {
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(std::optional<Batch> batch, s.loader->Next());
    if (!batch.has_value()) {
      return absl::InternalError(absl::StrCat("the data loader ended epoch ", s.position.epoch,
                                              " after ", s.position.batch_in_epoch, " of ",
                                              per_epoch, " batches"));
    }
    auto imgs = batch->images.to(s.device, /*non_blocking=*/true);
    const double data_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    const int64_t step = s.position.step;
    if (step % o.step.accum_iter == 0) {
      lr = LearningRateAt(
          lr_options,
          s.position.epoch + static_cast<double>(s.position.batch_in_epoch) / per_epoch);
      SetLearningRate(*s.mae_optimizer, lr);
      if (s.masker_optimizer) SetLearningRate(*s.masker_optimizer, lr);
    }
    const bool apply = (step + 1) % o.step.accum_iter == 0 || step + 1 == limit;
    const double lambda_cl = curriculum.Value(s.position.epoch, step);
    auto stats = s.step_runner->Run(imgs, lambda_cl, step, apply, batch->indices);
    if (!stats.ok()) {
      return absl::Status(
          stats.status().code(),
          absl::StrCat("training stopped: ", stats.status().message(),
                       s.last_checkpoint.empty()
                           ? std::string("; no checkpoint was written")
                           : absl::StrCat("; last good checkpoint: ", s.last_checkpoint)));
    }
    ++s.position.step;
    if (++s.position.batch_in_epoch == per_epoch) {
      ++s.position.epoch;
      s.position.batch_in_epoch = 0;
      if (s.position.step < limit) s.loader->StartEpoch(s.position.epoch, 0);
    }
    const int64_t images = batch->images.size(0) * world;
    images_seen += images;
    window_images += images;

    StepReport report;
    report.step = s.position.step;
    report.total_steps = limit;
    report.epoch = s.position.epoch;
    report.epochs = o.epochs;
    report.lambda_cl = lambda_cl;
    report.lr = lr;
    report.stats = *stats;
    report.data_seconds = data_seconds;
    report.step_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report.images_seen = images_seen;
    // The stop request rides on the loss average every rank does anyway:
    // when any rank was asked to stop, every rank sees it at the same step.
    const bool asked_to_stop = o.stop_requested != nullptr && o.stop_requested->load();
    std::vector<double> logged = {report.stats.loss_mae,     report.stats.masker_rec,
                                  report.stats.masker_gauss, report.stats.masker_kl,
                                  report.stats.masker_div,   report.stats.masker_total,
                                  asked_to_stop ? 1.0 : 0.0};
    RETURN_IF_ERROR(s.collectives->AverageScalars(logged));
    const bool stop = logged[6] > 0;
    report.stats.loss_mae = logged[0];
    report.stats.masker_rec = logged[1];
    report.stats.masker_gauss = logged[2];
    report.stats.masker_kl = logged[3];
    report.stats.masker_div = logged[4];
    report.stats.masker_total = logged[5];
    s.LogJson(report);
    const bool log_step = report.step % o.log_every == 0 || report.step == limit;
    if (log_step && s.overlap_images.defined()) {
      try {
        torch::Tensor kept = s.step_runner->KeptPatches(s.overlap_images);
        if (s.last_kept.defined()) {
          report.mask_overlap =
              (kept & s.last_kept).sum().item<double>() / std::max<double>(1, kept.sum().item<double>());
        }
        s.last_kept = kept;
      } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("mask overlap at step ", report.step, ": ", e.what()));
      }
    }
    s.observer->OnIteration(report);
    if (log_step) {
      const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
      report.images_per_second = secs > 0 ? window_images / secs : 0;
      window_start = Clock::now();
      window_images = 0;
      s.observer->OnStep(report);
    }
    const bool boundary = s.position.step % o.step.accum_iter == 0;
    if (o.checkpoint_every > 0 && boundary && s.position.step % o.checkpoint_every == 0 &&
        s.position.step < limit) {
      RETURN_IF_ERROR(s.SaveCheckpoint(s.position.step));
    }
    if (o.preview_every > 0 && s.position.step % o.preview_every == 0 && s.position.step < limit) {
      RETURN_IF_ERROR(s.WritePreviewAt(s.position.step));
    }
    // Stop on request at an accumulation boundary (a resumable state), after
    // a checkpoint there.
    if (stop && boundary && s.position.step < limit) {
      if (!(o.checkpoint_every > 0 && s.position.step % o.checkpoint_every == 0)) {
        RETURN_IF_ERROR(s.SaveCheckpoint(s.position.step));
      }
      return absl::CancelledError(absl::StrCat(
          "stopped on request at step ", s.position.step, " of ", limit,
          s.is_rank0() ? absl::StrCat("; checkpoint ", s.last_checkpoint) : std::string()));
    }
  }
  return s.Finish();
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
