#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace clmae {

// fc1 (D -> hidden) -> GELU (exact) -> fc2 (hidden -> D).
struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear fc2{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace clmae
