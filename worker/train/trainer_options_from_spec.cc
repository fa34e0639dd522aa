#include "worker/train/trainer_options_from_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/job_spec/job_spec_defaults.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

namespace d = job_spec_defaults;
using v1::DataSpec;

template <typename T, typename M>
T Or(bool has, M value, T fallback) {
  return has ? static_cast<T>(value) : fallback;
}

// Dataset options for `kind` at `path` and `split`.
DatasetOptions DatasetFor(DataSpec::Kind kind, const std::string& path, const std::string& split,
                          int channels, const ModelConfig& model, int64_t synthetic_size,
                          uint64_t seed) {
  DatasetOptions o;
  o.split = split;
  o.channels = channels;
  switch (kind) {
    case DataSpec::MNIST:
      o.kind = DatasetOptions::Kind::kIdx;
      o.path = path;
      break;
    case DataSpec::IMAGE_FOLDER:
      o.kind = DatasetOptions::Kind::kImageFolder;
      o.path = path;
      break;
    case DataSpec::SYNTHETIC:
      o.kind = DatasetOptions::Kind::kSynthetic;
      o.synthetic_size = synthetic_size;
      o.synthetic_height = model.img_size;
      o.synthetic_width = model.img_size;
      o.synthetic_seed = seed + (split == "test" ? 1 : 0);
      break;
    default:  // FASHION_MNIST
      o.kind = DatasetOptions::Kind::kIdx;
      o.path = path.empty() ? d::kFashionMnistPath : path;
      break;
  }
  return o;
}

// The masking section: plain-MAE mode, mask ratio and the masker's loss
// weights.
void ApplyMasking(const v1::MaskingSpec& m, TrainerOptions& o) {
  o.plain_mae = m.mode() == v1::MaskingSpec::PLAIN_MAE;
  o.step.mask_ratio = Or(m.has_mask_ratio(), m.mask_ratio(), d::kMaskRatio);
  o.step.weights.lambda_gauss = Or(m.has_lambda_gauss(), m.lambda_gauss(), d::kLambdaGauss);
  o.step.weights.lambda_kl = Or(m.has_lambda_kl(), m.lambda_kl(), d::kLambdaKl);
  o.step.weights.lambda_div = Or(m.has_lambda_div(), m.lambda_div(), d::kLambdaDiv);
}

// The curriculum section: its shape (per-epoch linear when unspecified) and
// end points.
void ApplyCurriculum(const v1::CurriculumSpec& c, CurriculumOptions& o) {
  switch (c.shape()) {
    case v1::CurriculumSpec::PER_STEP_LINEAR:
      o.shape = CurriculumOptions::Shape::kPerStepLinear;
      break;
    case v1::CurriculumSpec::COSINE:
      o.shape = CurriculumOptions::Shape::kCosine;
      break;
    case v1::CurriculumSpec::CONSTANT:
      o.shape = CurriculumOptions::Shape::kConstant;
      break;
    default:
      o.shape = CurriculumOptions::Shape::kPerEpochLinear;
  }
  o.start = Or(c.has_start(), c.start(), d::kCurriculumStart);
  o.end = Or(c.has_end(), c.end(), d::kCurriculumEnd);
}

// The optimizer section: learning-rate schedule, AdamW, clipping and
// gradient accumulation.
void ApplyOptimizer(const v1::OptimizerSpec& opt, TrainerOptions& o) {
  o.blr = Or(opt.has_blr(), opt.blr(), d::kBlr);
  if (opt.has_lr()) o.lr = opt.lr();
  o.min_lr = Or(opt.has_min_lr(), opt.min_lr(), d::kMinLr);
  o.warmup_epochs = Or(opt.has_warmup_epochs(), opt.warmup_epochs(), d::kWarmupEpochs);
  o.optim.weight_decay = Or(opt.has_weight_decay(), opt.weight_decay(), d::kWeightDecay);
  o.optim.beta1 = Or(opt.has_beta1(), opt.beta1(), d::kBeta1);
  o.optim.beta2 = Or(opt.has_beta2(), opt.beta2(), d::kBeta2);
  o.optim.decay_tokens = Or(opt.has_decay_tokens(), opt.decay_tokens(), d::kDecayTokens);
  o.step.clip_grad = Or(opt.has_clip_grad(), opt.clip_grad(), d::kClipGrad);
  o.step.accum_iter = Or(opt.has_accum_iter(), opt.accum_iter(), d::kAccumIter);
}

// The train section: length, batch size, seed, device and precision,
// threads, logging, initial weights and the gradient-averaging buckets.
void ApplyTrain(const v1::TrainSpec& t, TrainerOptions& o) {
  o.epochs = Or(t.has_epochs(), t.epochs(), d::kEpochs);
  o.loader.batch_size = Or(t.has_batch_size(), t.batch_size(), d::kBatchSize);
  o.max_steps = Or<int64_t>(t.has_max_steps(), t.max_steps(), 0);
  o.step.seed = Or<uint64_t>(t.has_seed(), t.seed(), 0);
  o.device = t.device().empty() ? d::kDevice : t.device();
  o.step.bf16 = t.precision() == v1::TrainSpec::BF16;
  o.step.cuda_graphs = t.has_cuda_graphs() && t.cuda_graphs();
  o.threads = Or(t.has_threads(), t.threads(), 0);
  o.log_every = Or(t.has_log_every(), t.log_every(), d::kLogEvery);
  o.init_from = t.init_from();
  o.step.averaging.bucket_bytes =
      static_cast<int64_t>(Or(t.has_bucket_mb(), t.bucket_mb(), d::kBucketMb) * 1e6);
}

// Images of a synthetic dataset (the data section's, or its default).
int64_t SyntheticSize(const DataSpec& data) {
  return Or<int64_t>(data.has_synthetic_size(), data.synthetic_size(), d::kSyntheticSize);
}

// The data section: the training dataset, the transform and the loader.
// Needs o.model and o.step.seed set.
void ApplyData(const DataSpec& data, TrainerOptions& o) {
  const int channels = o.model.in_chans;
  o.data = DatasetFor(data.kind(), data.path(), "train", channels, o.model, SyntheticSize(data),
                      o.step.seed);
  o.data_limit = Or<int64_t>(data.has_limit(), data.limit(), 0);
  o.transform.kind = data.transform() == DataSpec::EVAL
                         ? TransformOptions::Kind::kEval
                         : TransformOptions::Kind::kRandomResizedCrop;
  o.transform.scale_min = Or(data.has_crop_scale_min(), data.crop_scale_min(), d::kCropScaleMin);
  if (channels == 1) {
    // Fashion-MNIST's pixel statistics; ImageNet's for colour images.
    o.transform.mean = {0.2860};
    o.transform.std = {0.3530};
  }
  if (data.mean_size() > 0) o.transform.mean.assign(data.mean().begin(), data.mean().end());
  if (data.std_size() > 0) o.transform.std.assign(data.std().begin(), data.std().end());
  if (data.kind() != DataSpec::IMAGE_FOLDER) o.transform.crop_fraction = 1.0;
  o.loader.num_workers = Or(data.has_num_workers(), data.num_workers(), d::kNumWorkers);
  o.loader.prefetch = Or(data.has_prefetch(), data.prefetch(), d::kPrefetch);
  o.loader.fail_on_decode_error = data.fail_on_decode_error();
  // The trainer puts the rank's own CUDA device in place of this one.
  if (data.decode() == DataSpec::GPU) o.loader.decode_device = torch::Device(torch::kCUDA);
}

// The output section: the folder (runs/<job name> by default), checkpoints,
// previews and the safetensors export.
void ApplyOutput(const v1::OutputSpec& out, const std::string& job_name, TrainerOptions& o) {
  o.output_dir =
      out.dir().empty() ? absl::StrCat("runs/", job_name.empty() ? "clmae" : job_name) : out.dir();
  o.checkpoint_every = Or(out.has_checkpoint_every(), out.checkpoint_every(), 0);
  o.keep_checkpoints = Or(out.has_keep_checkpoints(), out.keep_checkpoints(), d::kKeepCheckpoints);
  o.preview_every = Or(out.has_preview_every(), out.preview_every(), 0);
  o.preview_images = Or(out.has_preview_images(), out.preview_images(), d::kPreviewImages);
  o.export_safetensors = out.export_safetensors();
}

// The eval section: when enabled, its train/test datasets (by default the
// training data's kind and path; image folders split into train/ and val/)
// and the k-NN and linear-probe settings. Needs o.model and o.step.seed set.
void ApplyEval(const v1::EvalSpec& e, const DataSpec& data, TrainerOptions& o) {
  o.eval_enabled = e.enabled();
  if (!o.eval_enabled) return;
  const int channels = o.model.in_chans;
  const int64_t synthetic = SyntheticSize(data);
  const auto kind = e.kind() == DataSpec::KIND_UNSPECIFIED ? data.kind() : e.kind();
  std::string path = e.path();
  if (path.empty() && kind == data.kind()) path = data.path();
  if (kind == DataSpec::IMAGE_FOLDER) {
    o.eval_train =
        DatasetFor(kind, path + "/train", "train", channels, o.model, synthetic, o.step.seed);
    o.eval_test =
        DatasetFor(kind, path + "/val", "test", channels, o.model, synthetic, o.step.seed);
  } else {
    o.eval_train = DatasetFor(kind, path, "train", channels, o.model, synthetic, o.step.seed);
    o.eval_test = DatasetFor(kind, path, "test", channels, o.model, synthetic, o.step.seed);
  }
  o.eval.knn_k = Or(e.has_knn_k(), e.knn_k(), d::kKnnK);
  o.eval.probe_epochs = Or(e.has_probe_epochs(), e.probe_epochs(), d::kProbeEpochs);
  o.eval.train_limit = Or<int64_t>(e.has_train_limit(), e.train_limit(), 0);
  o.eval.test_limit = Or<int64_t>(e.has_test_limit(), e.test_limit(), 0);
  o.eval_every_epochs = Or(e.has_every_epochs(), e.every_epochs(), d::kEvalEveryEpochs);
  // The periodic subset is the first images of the same splits, no more
  // than the final evaluation uses.
  const auto capped = [](int64_t periodic, int64_t limit) {
    return limit > 0 ? std::min(periodic, limit) : periodic;
  };
  o.eval_periodic = o.eval;
  o.eval_periodic.probe_epochs = 0;
  o.eval_periodic.train_limit =
      capped(Or<int64_t>(e.has_periodic_train_limit(), e.periodic_train_limit(),
                         d::kEvalPeriodicTrainLimit),
             o.eval.train_limit);
  o.eval_periodic.test_limit = capped(
      Or<int64_t>(e.has_periodic_test_limit(), e.periodic_test_limit(), d::kEvalPeriodicTestLimit),
      o.eval.test_limit);
}

}  // namespace

absl::StatusOr<TrainerOptions> TrainerOptionsFromSpec(const v1::JobSpec& spec) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  TrainerOptions o;
  ASSIGN_OR_RETURN(o.model, ResolveModelConfig(spec));
  ApplyMasking(spec.masking(), o);
  ApplyCurriculum(spec.curriculum(), o.curriculum);
  ApplyOptimizer(spec.optimizer(), o);
  ApplyTrain(spec.train(), o);
  ApplyData(spec.data(), o);
  ApplyOutput(spec.output(), spec.name(), o);
  ApplyEval(spec.eval(), spec.data(), o);
  o.spec_text = JobSpecToYaml(spec);
  return o;
}

}  // namespace clmae
