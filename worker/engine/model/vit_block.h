#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include "worker/engine/model/attention.h"
#include "worker/engine/model/mlp.h"

namespace clmae {

// Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).
// Parameter names follow timm (norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
// mlp.fc2), so state dicts match the reference (docs/method.md §8.2).
struct VitBlockImpl : torch::nn::Module {
  VitBlockImpl(int64_t dim, int64_t num_heads, int64_t mlp_ratio, double norm_eps);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::LayerNorm norm1{nullptr};
  Attention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(VitBlock);

// Xavier-uniform weights and zero biases for every Linear, weight 1 / bias 0
// for every LayerNorm under `module` (the MAE initialisation).
void InitVitWeights(torch::nn::Module& module);

}  // namespace clmae
