#pragma once

// AdamW for one network with the reference's parameter groups (docs/method.md §5).

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

namespace clmae {

struct OptimOptions {
  double weight_decay = 0.05;
  double beta1 = 0.9;
  double beta2 = 0.95;
  // The reference decays the 1 x 1 x D class / mask tokens (timm's
  // add_weight_decay with an empty skip list); false exempts them too.
  bool decay_tokens = true;
};

// Whether parameter `name` of shape `sizes` is weight-decayed: not biases,
// norms or other 1-D parameters; tokens per `decay_tokens`.
bool IsDecayed(const std::string& name, const torch::Tensor& param, bool decay_tokens);

// AdamW over `module`'s trainable parameters in two groups: group 0 decayed,
// group 1 not. The lr starts at 0; the trainer sets it every iteration.
std::unique_ptr<torch::optim::AdamW> MakeAdamW(torch::nn::Module& module,
                                               const OptimOptions& options);

// Sets the lr of every group.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

// One AdamW step of `optimizer` (from MakeAdamW) over the parameters that have
// gradients. On CUDA: one fused multi-tensor kernel per parameter group
// (at::_fused_adamw_, PyTorch's fused AdamW) instead of LibTorch's
// per-parameter loop, on the same state LibTorch's AdamW keeps, so
// checkpoints are the same either way. Elsewhere: LibTorch's own step.
void AdamWStep(torch::optim::AdamW& optimizer);

// Global L2 norm of the gradients of `params` (those that have one), and,
// when `max_norm` > 0 and the norm exceeds it, scales them down to it (as
// torch.nn.utils.clip_grad_norm_). One multi-tensor norm and one host sync.
double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace clmae
