#include "worker/engine/model/vit_block.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

namespace clmae {

VitBlockImpl::VitBlockImpl(int64_t dim, int64_t num_heads, int64_t mlp_ratio, double norm_eps) {
  auto ln = torch::nn::LayerNormOptions({dim}).eps(norm_eps);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  attn = register_module("attn", Attention(dim, num_heads));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  mlp = register_module("mlp", Mlp(dim, dim * mlp_ratio));
}

torch::Tensor VitBlockImpl::forward(torch::Tensor x) {
  x = x + attn(norm1(x));
  return x + mlp(norm2(x));
}

void InitVitWeights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* linear = m->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
    } else if (auto* norm = m->as<torch::nn::LayerNorm>()) {
      torch::nn::init::ones_(norm->weight);
      torch::nn::init::zeros_(norm->bias);
    }
  }
}

}  // namespace clmae
