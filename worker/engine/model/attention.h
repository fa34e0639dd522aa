#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace clmae {

// Multi-head self-attention with a qkv bias (timm's Attention), computed with
// at::scaled_dot_product_attention so the fused kernels apply on GPU.
// Parameters: qkv.{weight,bias} [3D, D], proj.{weight,bias} [D, D].
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t dim, int64_t num_heads);
  // x: [N, T, D] -> [N, T, D].
  torch::Tensor forward(const torch::Tensor& x);

  int64_t num_heads;
  torch::nn::Linear qkv{nullptr};
  torch::nn::Linear proj{nullptr};
};
TORCH_MODULE(Attention);

}  // namespace clmae
