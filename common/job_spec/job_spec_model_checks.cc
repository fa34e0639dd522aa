// Model, masking, curriculum and optimizer sections of job-spec validation.

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/job_spec/job_spec_defaults.h"
#include "common/job_spec/job_spec_sections.h"
#include "common/job_spec/spec_checks.h"
#include "common/status_macros.h"

namespace clmae::job_spec_internal {
namespace {

namespace defaults = job_spec_defaults;
using spec_checks::IntInRange;
using spec_checks::Invalid;
using spec_checks::KnownEnum;
using spec_checks::NonNegative;
using spec_checks::Number;
using spec_checks::NumberIn;
using spec_checks::Or;
using spec_checks::Positive;

// Sanity limits beyond ValidateModelConfig's own rules: far above any model
// this project trains, low enough that a typo cannot ask for terabytes.
constexpr int kMaxImgSize = 4096;
constexpr int kMaxWidth = 8192;
constexpr int kMaxDepth = 256;
constexpr int kMaxHeads = 256;
constexpr int kMaxMlpRatio = 16;
constexpr int kMaxPatches = 65536;

}  // namespace

absl::Status CheckModel(const ModelConfig& m) {
  RETURN_IF_ERROR(ValidateModelConfig(m, "model."));
  const std::pair<const char*, std::pair<int, int>> limits[] = {
      {"model.img_size", {m.img_size, kMaxImgSize}},
      {"model.embed_dim", {m.embed_dim, kMaxWidth}},
      {"model.decoder_embed_dim", {m.decoder_embed_dim, kMaxWidth}},
      {"model.depth", {m.depth, kMaxDepth}},
      {"model.decoder_depth", {m.decoder_depth, kMaxDepth}},
      {"model.masker_depth", {m.masker_depth, kMaxDepth}},
      {"model.num_heads", {m.num_heads, kMaxHeads}},
      {"model.decoder_num_heads", {m.decoder_num_heads, kMaxHeads}},
      {"model.masker_num_heads", {m.masker_num_heads, kMaxHeads}},
      {"model.mlp_ratio", {m.mlp_ratio, kMaxMlpRatio}},
  };
  for (const auto& [field, value_and_max] : limits) {
    RETURN_IF_ERROR(IntInRange(field, value_and_max.first, 1, value_and_max.second));
  }
  if (m.num_patches() > kMaxPatches) {
    return Invalid("model.patch_size",
                   absl::StrCat("large enough for at most ", kMaxPatches,
                                " patches of model.img_size (", m.img_size, ")"),
                   absl::StrCat(m.patch_size, " (", m.num_patches(), " patches)"));
  }
  return absl::OkStatus();
}

absl::Status CheckMasking(const v1::MaskingSpec& s, const ModelConfig& model) {
  RETURN_IF_ERROR(KnownEnum("masking.mode", *v1::MaskingSpec::Mode_descriptor(), s.mode()));
  const double r = Or(s.has_mask_ratio(), s.mask_ratio(), defaults::kMaskRatio);
  RETURN_IF_ERROR(
      NumberIn("masking.mask_ratio", r, {.lo = 0, .lo_open = true, .hi = 1, .hi_open = true}));
  // The engine keeps floor(L * (1 - r)) patches (docs/method.md §3).
  const int patches = model.num_patches();
  const double kept = std::floor(patches * (1.0 - r));
  if (kept < 1) {
    return Invalid("masking.mask_ratio",
                   absl::StrFormat("at most 1 - 1/L = %.6g so that floor(L * (1 - mask_ratio)) "
                                   "keeps at least one of the model's L = %d patches",
                                   1.0 - 1.0 / patches, patches),
                   Number(r));
  }
  if (kept >= patches) {
    return Invalid(
        "masking.mask_ratio",
        absl::StrFormat("large enough to mask at least one of the model's %d patches", patches),
        Number(r));
  }
  RETURN_IF_ERROR(NonNegative("masking.lambda_gauss",
                              Or(s.has_lambda_gauss(), s.lambda_gauss(), defaults::kLambdaGauss)));
  RETURN_IF_ERROR(
      NonNegative("masking.lambda_kl", Or(s.has_lambda_kl(), s.lambda_kl(), defaults::kLambdaKl)));
  return NonNegative("masking.lambda_div",
                     Or(s.has_lambda_div(), s.lambda_div(), defaults::kLambdaDiv));
}

absl::Status CheckCurriculum(const v1::CurriculumSpec& s) {
  RETURN_IF_ERROR(
      KnownEnum("curriculum.shape", *v1::CurriculumSpec::Shape_descriptor(), s.shape()));
  const spec_checks::Interval range = {.lo = -10, .hi = 10};
  RETURN_IF_ERROR(NumberIn("curriculum.start",
                           Or(s.has_start(), s.start(), defaults::kCurriculumStart), range));
  return NumberIn("curriculum.end", Or(s.has_end(), s.end(), defaults::kCurriculumEnd), range);
}

absl::Status CheckOptimizer(const v1::JobSpec& spec) {
  const v1::OptimizerSpec& s = spec.optimizer();
  const double blr = Or(s.has_blr(), s.blr(), defaults::kBlr);
  RETURN_IF_ERROR(Positive("optimizer.blr", blr));
  if (s.has_lr()) RETURN_IF_ERROR(Positive("optimizer.lr", s.lr()));
  const double min_lr = Or(s.has_min_lr(), s.min_lr(), defaults::kMinLr);
  RETURN_IF_ERROR(NonNegative("optimizer.min_lr", min_lr));
  const double warmup = Or(s.has_warmup_epochs(), s.warmup_epochs(), defaults::kWarmupEpochs);
  RETURN_IF_ERROR(NonNegative("optimizer.warmup_epochs", warmup));
  const int epochs = Or(spec.train().has_epochs(), spec.train().epochs(), defaults::kEpochs);
  if (warmup >= epochs) {
    return Invalid("optimizer.warmup_epochs", absl::StrCat("less than train.epochs (", epochs, ")"),
                   absl::StrCat(Number(warmup), s.has_warmup_epochs() ? "" : " (the default)"));
  }
  RETURN_IF_ERROR(NonNegative("optimizer.weight_decay",
                              Or(s.has_weight_decay(), s.weight_decay(), defaults::kWeightDecay)));
  const spec_checks::Interval beta = {.lo = 0, .hi = 1, .hi_open = true};
  RETURN_IF_ERROR(
      NumberIn("optimizer.beta1", Or(s.has_beta1(), s.beta1(), defaults::kBeta1), beta));
  RETURN_IF_ERROR(
      NumberIn("optimizer.beta2", Or(s.has_beta2(), s.beta2(), defaults::kBeta2), beta));
  RETURN_IF_ERROR(NonNegative("optimizer.clip_grad",
                              Or(s.has_clip_grad(), s.clip_grad(), defaults::kClipGrad)));
  const int accum = Or(s.has_accum_iter(), s.accum_iter(), defaults::kAccumIter);
  RETURN_IF_ERROR(IntInRange("optimizer.accum_iter", accum, 1, 65536));
  // The cosine schedule falls from the peak lr to min_lr, never rises.
  const v1::TrainSpec& t = spec.train();
  const v1::ResourceSpec& r = spec.resources();
  const double effective_batch =
      static_cast<double>(Or(t.has_batch_size(), t.batch_size(), defaults::kBatchSize)) * accum *
      Or(r.has_world_size(), r.world_size(), defaults::kWorldSize);
  const double lr = s.has_lr() ? s.lr() : blr * effective_batch / defaults::kLrBatchDivisor;
  if (min_lr > lr) {
    return Invalid(
        "optimizer.min_lr",
        absl::StrCat("at most the peak learning rate ", Number(lr),
                     s.has_lr() ? " (optimizer.lr)" : " (optimizer.blr * effective batch / 256)"),
        Number(min_lr));
  }
  return absl::OkStatus();
}

}  // namespace clmae::job_spec_internal
