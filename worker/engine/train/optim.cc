#include "worker/engine/train/optim.h"

#include <utility>

#include "absl/strings/match.h"

namespace clmae {

bool IsDecayed(const std::string& name, const torch::Tensor& param, bool decay_tokens) {
  if (param.dim() <= 1 || absl::EndsWith(name, ".bias")) return false;
  const bool token = absl::EndsWith(name, "cls_token") || absl::EndsWith(name, "mask_token");
  return !token || decay_tokens;
}

std::unique_ptr<torch::optim::AdamW> MakeAdamW(torch::nn::Module& module,
                                               const OptimOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    (IsDecayed(item.key(), item.value(), o.decay_tokens) ? decay : no_decay)
        .push_back(item.value());
  }
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(0.0).betas({o.beta1, o.beta2}).weight_decay(wd).eps(1e-8));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::move(decay), options(o.weight_decay));
  groups.emplace_back(std::move(no_decay), options(0.0));
  return std::make_unique<torch::optim::AdamW>(std::move(groups),
                                               torch::optim::AdamWOptions(0.0));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace clmae
