#pragma once

// AdamW for one network with the reference's parameter groups (METHOD.md §4).

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

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

}  // namespace clmae
