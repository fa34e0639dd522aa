#include "worker/engine/train/optim.h"

#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <torch/torch.h>

#include <utility>

#include "absl/strings/match.h"

namespace clmae {

bool IsDecayed(const std::string& name, const torch::Tensor& param, bool decay_tokens) {
  if (param.dim() <= 1 || absl::EndsWith(name, ".bias")) return false;
  const bool token = absl::EndsWith(name, "cls_token") || absl::EndsWith(name, "mask_token");
  return !token || decay_tokens;
}

std::unique_ptr<torch::optim::AdamW> MakeAdamW(torch::nn::Module& module, const OptimOptions& o) {
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
  return std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(0.0));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

void AdamWStep(torch::optim::AdamW& optimizer) {
  const auto& groups = optimizer.param_groups();
  const bool cuda =
      !groups.empty() && !groups[0].params().empty() && groups[0].params()[0].is_cuda();
  if (!cuda) {
    optimizer.step();
    return;
  }
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    std::vector<double> steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = optimizer.state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(state);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      state.step(state.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(state.exp_avg());
      exp_avg_sqs.push_back(state.exp_avg_sq());
      steps.push_back(static_cast<double>(state.step()));
    }
    if (params.empty()) continue;
    // The kernel reads each parameter's step count from a device tensor.
    auto step_tensors = torch::tensor(steps, torch::kFloat32).to(params[0].device()).unbind(0);
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, step_tensors,
                      o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(),
                      o.eps(), /*amsgrad=*/false, /*maximize=*/false);
  }
}

double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  auto norms = at::_foreach_norm(grads, 2);
  const double total = torch::linalg_vector_norm(torch::stack(norms), 2).item<double>();
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    at::_foreach_mul_(grads, max_norm / (total + 1e-6));
  }
  return total;
}

}  // namespace clmae
