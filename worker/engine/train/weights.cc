#include "worker/engine/train/weights.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

constexpr char kMaskerPrefix[] = "masking_net.";

bool IsEncoderKey(const std::string& name) {
  return !absl::StartsWith(name, "decoder_") && name != "mask_token" &&
         !absl::StartsWith(name, kMaskerPrefix);
}

void Append(torch::nn::Module& module, const std::string& prefix, NamedTensors& out) {
  for (const auto& p : module.named_parameters()) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers()) out.emplace_back(prefix + b.key(), b.value());
}

std::string Shape(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

}  // namespace

NamedTensors NamedWeights(MaeVit& mae, MaskingNet& masker, WeightSet set) {
  NamedTensors all;
  Append(*mae, "", all);
  if (!masker.is_empty()) Append(*masker, kMaskerPrefix, all);
  if (set == WeightSet::kAll) return all;
  NamedTensors encoder;
  for (auto& [name, t] : all) {
    if (IsEncoderKey(name)) encoder.emplace_back(name, t);
  }
  return encoder;
}

absl::Status LoadWeights(const NamedTensors& tensors, MaeVit& mae, MaskingNet& masker) {
  std::map<std::string, torch::Tensor> ours;
  for (auto& [name, t] : NamedWeights(mae, masker, WeightSet::kAll)) ours[name] = t;
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, t] : tensors) given[name] = &t;

  bool has_decoder = false, has_masker = false;
  for (const auto& [name, t] : given) {
    has_decoder |= absl::StartsWith(name, "decoder_") || name == "mask_token";
    has_masker |= absl::StartsWith(name, kMaskerPrefix);
  }
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, t] : ours) {
    const bool required =
        IsEncoderKey(name) || (absl::StartsWith(name, kMaskerPrefix) ? has_masker : has_decoder);
    auto it = given.find(name);
    if (it == given.end()) {
      if (required) missing.push_back(name);
    } else if (it->second->sizes() != t.sizes()) {
      misshaped.push_back(
          absl::StrCat(name, " (file ", Shape(*it->second), ", model ", Shape(t), ")"));
    }
  }
  for (const auto& [name, t] : given) {
    if (!ours.count(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty())
      parts.push_back(absl::StrCat("missing keys: ", absl::StrJoin(missing, ", ")));
    if (!unexpected.empty())
      parts.push_back(absl::StrCat("unexpected keys: ", absl::StrJoin(unexpected, ", ")));
    if (!misshaped.empty())
      parts.push_back(absl::StrCat("mis-shaped keys: ", absl::StrJoin(misshaped, ", ")));
    return absl::InvalidArgumentError(
        absl::StrCat("weights do not match the model: ", absl::StrJoin(parts, "; ")));
  }
  return CatchAll("loading weights", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : given) ours[name].copy_(*t);
    return absl::OkStatus();
  });
}

}  // namespace clmae
