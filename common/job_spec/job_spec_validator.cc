#include "common/job_spec/job_spec_validator.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/job_spec/job_spec_defaults.h"
#include "common/job_spec/job_spec_sections.h"
#include "common/job_spec/spec_checks.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace clmae {
namespace {

namespace defaults = job_spec_defaults;
using job_spec_internal::CheckCurriculum;
using job_spec_internal::CheckData;
using job_spec_internal::CheckDecode;
using job_spec_internal::CheckEval;
using job_spec_internal::CheckMasking;
using job_spec_internal::CheckModel;
using job_spec_internal::CheckOptimizer;
using job_spec_internal::CheckOutput;
using job_spec_internal::CheckResources;
using job_spec_internal::CheckTrain;
using spec_checks::IntInRange;
using spec_checks::Invalid;
using v1::JobSpec;

constexpr int kMaxNameLength = 63;
constexpr int kMaxLabels = 64;
constexpr int kMaxLabelValueLength = 256;

std::string Quoted(absl::string_view text) { return absl::StrCat("'", Clip(text), "'"); }

bool IsLowerAlnum(char c) { return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'z'); }

absl::Status CheckName(const std::string& name) {
  const char* allowed =
      "1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit";
  bool ok = !name.empty() && name.size() <= kMaxNameLength && IsLowerAlnum(name.front()) &&
            IsLowerAlnum(name.back());
  for (char c : name) ok = ok && (IsLowerAlnum(c) || c == '-');
  if (ok) return absl::OkStatus();
  return Invalid("name", allowed, name.empty() ? "nothing" : Quoted(name));
}

absl::Status CheckLabels(const JobSpec& spec) {
  if (spec.labels_size() > kMaxLabels) {
    return Invalid("labels", absl::StrCat("at most ", kMaxLabels, " entries"),
                   absl::StrCat(spec.labels_size()));
  }
  for (const auto& [key, value] : spec.labels()) {
    bool ok = !key.empty() && key.size() <= kMaxNameLength;
    for (char c : key) ok = ok && (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.');
    if (!ok) {
      return Invalid("labels", "keyed by 1 to 63 characters of A-Z, a-z, 0-9, '-', '_' and '.'",
                     absl::StrCat("the key ", Quoted(key)));
    }
    if (value.size() > kMaxLabelValueLength) {
      return Invalid(absl::StrCat("labels.", key),
                     absl::StrCat("at most ", kMaxLabelValueLength, " characters"),
                     absl::StrCat(value.size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ResolveModelConfig(const JobSpec& spec) {
  const v1::ModelSpec& s = spec.model();
  ASSIGN_OR_RETURN(ModelConfig m,
                   ModelPreset(s.preset().empty() ? defaults::kModelPreset : s.preset()));
  if (s.has_img_size()) m.img_size = s.img_size();
  if (s.has_in_chans()) m.in_chans = s.in_chans();
  if (s.has_patch_size()) m.patch_size = s.patch_size();
  if (s.has_embed_dim()) m.embed_dim = s.embed_dim();
  if (s.has_depth()) m.depth = s.depth();
  if (s.has_num_heads()) m.num_heads = s.num_heads();
  if (s.has_decoder_embed_dim()) m.decoder_embed_dim = s.decoder_embed_dim();
  if (s.has_decoder_depth()) m.decoder_depth = s.decoder_depth();
  if (s.has_decoder_num_heads()) m.decoder_num_heads = s.decoder_num_heads();
  if (s.has_mlp_ratio()) m.mlp_ratio = s.mlp_ratio();
  if (s.has_masker_depth()) m.masker_depth = s.masker_depth();
  if (s.has_masker_num_heads()) m.masker_num_heads = s.masker_num_heads();
  if (s.has_norm_pix_loss()) m.norm_pix_loss = s.norm_pix_loss();
  return m;
}

absl::Status ValidateJobSpec(const JobSpec& spec) {
  RETURN_IF_ERROR(CheckName(spec.name()));
  RETURN_IF_ERROR(CheckLabels(spec));
  ASSIGN_OR_RETURN(const ModelConfig model, ResolveModelConfig(spec));
  RETURN_IF_ERROR(CheckModel(model));
  RETURN_IF_ERROR(CheckMasking(spec.masking(), model));
  RETURN_IF_ERROR(CheckCurriculum(spec.curriculum()));
  RETURN_IF_ERROR(CheckData(spec.data(), model));
  RETURN_IF_ERROR(CheckTrain(spec.train()));
  RETURN_IF_ERROR(CheckDecode(spec.data(), spec.train()));
  RETURN_IF_ERROR(CheckOptimizer(spec));
  RETURN_IF_ERROR(CheckEval(spec, model));
  RETURN_IF_ERROR(CheckOutput(spec.output()));
  return CheckResources(spec);
}

absl::Status CheckInsideFolder(absl::string_view field, absl::string_view path) {
  constexpr absl::string_view kAllowed =
      "a relative path inside the job's folder on the worker (no leading '/', no '..')";
  if (path.empty()) return absl::OkStatus();
  const std::string given = Quoted(path);
  if (path.front() == '/') return Invalid(field, kAllowed, given);
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return Invalid(field, kAllowed, given);
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpecForService(const JobSpec& spec) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  return CheckInsideFolder("output.dir", spec.output().dir());
}

}  // namespace clmae
