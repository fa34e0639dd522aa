#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include "common/model_config.h"

namespace clmae {

// The masking module of docs/method.md §2: a small Transformer over the encoder's
// position-embedded patch tokens with its own class token, whose head
// (LayerNorm -> Linear D -> L -> sigmoid on the class token) scores every
// patch; a high score means "keep".
//
// Names follow the reference under the `masking_net.` prefix: cls_token,
// pos_embed (a zero buffer [1, 1, D]: the class token's position embedding),
// blocks.{i}.*, mlp_head.0 (LayerNorm), mlp_head.1 (Linear).
struct MaskingNetImpl : torch::nn::Module {
  explicit MaskingNetImpl(const ModelConfig& config);
  // tokens [N, L, D] -> scores [N, L] in (0, 1), float32.
  torch::Tensor forward(const torch::Tensor& tokens);

  torch::Tensor cls_token;  // [1, 1, D]
  torch::Tensor pos_embed;  // [1, 1, D] zeros, buffer
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Sequential mlp_head{nullptr};
};
TORCH_MODULE(MaskingNet);

}  // namespace clmae
