#include "worker/engine/train/optim.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <torch/torch.h>

#include <optional>
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

void AdamWStepper::RefreshLr() {
  torch::NoGradGuard no_grad;
  auto& groups = optimizer_->param_groups();
  lr_.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].params().empty()) continue;
    const double lr = static_cast<const torch::optim::AdamWOptions&>(groups[g].options()).lr();
    const auto device = groups[g].params()[0].device();
    if (!lr_[g].defined() || lr_[g].device() != device) {
      lr_[g] = torch::full({}, lr, torch::dtype(torch::kFloat32).device(device));
    } else {
      lr_[g].fill_(lr);
    }
  }
}

void AdamWStepper::AdvanceHostCounts() {
  for (const auto& p : last_stepped_) {
    auto& state = static_cast<torch::optim::AdamWParamState&>(
        *optimizer_->state().at(p.unsafeGetTensorImpl()));
    state.step(state.step() + 1);
    mirrors_[p.unsafeGetTensorImpl()].host_step = state.step();
  }
}

void AdamWStepper::Step(const torch::Tensor& found_inf, bool refresh_lr) {
  torch::NoGradGuard no_grad;
  if (refresh_lr || lr_.size() != optimizer_->param_groups().size()) RefreshLr();
  last_stepped_.clear();
  auto& groups = optimizer_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& group = groups[g];
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = optimizer_->state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(state);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      Mirror& mirror = mirrors_[p.unsafeGetTensorImpl()];
      if (mirror.host_step != state.step() || !mirror.device_step.defined()) {
        // A fill on the device, not a copy from the host: no synchronisation.
        mirror.device_step = torch::full({}, static_cast<double>(state.step()),
                                         torch::dtype(torch::kFloat32).device(p.device()));
      }
      state.step(state.step() + 1);
      mirror.host_step = state.step();
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(state.exp_avg());
      exp_avg_sqs.push_back(state.exp_avg_sq());
      steps.push_back(mirror.device_step);
      last_stepped_.push_back(p);
    }
    if (params.empty()) continue;
    at::_foreach_add_(steps, 1.0);  // the kernel reads the step it takes
    std::optional<at::Tensor> inf;
    if (found_inf.defined()) inf = found_inf;
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr_[g],
                      std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(),
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
  }
}

torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return {};
  torch::NoGradGuard no_grad;
  auto norms = at::_foreach_norm(grads, 2);
  auto total = torch::linalg_vector_norm(torch::stack(norms), 2).to(torch::kFloat32);
  if (max_norm > 0) {
    // Multiplying by exactly 1 when under the limit keeps the step free of a
    // host decision; a non-finite norm makes the gradients non-finite, and
    // the caller refuses that step.
    auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, coef);
  }
  return total;
}

}  // namespace clmae
