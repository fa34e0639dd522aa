#include "worker/engine/model/masking_net.h"

#include <torch/nn/init.h>
#include <torch/torch.h>

#include "worker/engine/model/vit_block.h"

namespace clmae {
namespace {
constexpr double kMaskerNormEps = 1e-5;
}  // namespace

MaskingNetImpl::MaskingNetImpl(const ModelConfig& c) {
  const int64_t d = c.embed_dim;
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, d}));
  pos_embed = register_buffer("pos_embed", torch::zeros({1, 1, d}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.masker_depth; ++i) {
    blocks->push_back(VitBlock(d, c.masker_num_heads, c.mlp_ratio, kMaskerNormEps));
  }
  mlp_head = register_module(
      "mlp_head", torch::nn::Sequential(
                      torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(kMaskerNormEps)),
                      torch::nn::Linear(d, c.num_patches())));
  InitVitWeights(*this);
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(cls_token, 0.0, 0.02);
}

torch::Tensor MaskingNetImpl::forward(const torch::Tensor& tokens) {
  const int64_t n = tokens.size(0);
  auto cls = (cls_token + pos_embed).to(tokens.dtype()).expand({n, -1, -1});
  auto h = torch::cat({cls, tokens}, 1);
  for (const auto& block : *blocks) h = block->as<VitBlock>()->forward(h);
  return torch::sigmoid(mlp_head->forward(h.select(1, 0)).to(torch::kFloat32));
}

}  // namespace clmae
