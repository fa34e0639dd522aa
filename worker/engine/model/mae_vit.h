#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "common/model_config.h"

namespace clmae {

// The p x p, stride-p convolution C_in -> D (timm's PatchEmbed: `proj`).
struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl(int64_t in_chans, int64_t embed_dim, int64_t patch_size);
  // [N, C, H, W] -> [N, L, D].
  torch::Tensor forward(const torch::Tensor& imgs);

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// What the encoder returns: the latent tokens (class token first), the binary
// mask over the L patches in their original order (1 = removed) and the
// permutation that restores the original order from the encoder's order.
struct EncoderOutput {
  torch::Tensor latent;       // [N, 1 + kept, D]
  torch::Tensor mask;         // [N, L] float
  torch::Tensor ids_restore;  // [N, L] int64
};

// The masked autoencoder backbone of docs/method.md §2 (He et al. 2022). Parameter
// and buffer names are the reference's state-dict keys (docs/method.md §8.2); the
// position embeddings are buffers (fixed, not trained).
//
// The phases of a CL-MAE iteration compose its pieces (train_step.cc):
//   x = Embed(imgs)                                   tokens + position
//   Encode(x, ids_shuffle, len_keep) -> EncoderOutput keep the first len_keep
//   Decode(latent, ids_restore)      -> pred [N, L, p*p*C]
//   PerPatchError(imgs, pred)        -> e [N, L]
// The encoder's features of whole images (no masking), after its final
// norm: the class token's, and the mean of the patch tokens'. MAE features
// differ a lot between the two, so quality is measured on both.
struct EncodedFeatures {
  torch::Tensor cls;         // [N, D]
  torch::Tensor patch_mean;  // [N, D]
};

struct MaeVitImpl : torch::nn::Module {
  explicit MaeVitImpl(const ModelConfig& config);

  // Patch embedding plus fixed position embedding: [N, C, H, W] -> [N, L, D].
  torch::Tensor Embed(const torch::Tensor& imgs);
  // Reorders the tokens by `ids_shuffle` [N, L] (int64), keeps the first
  // `len_keep`, prepends the class token and runs the encoder.
  EncoderOutput Encode(const torch::Tensor& x, const torch::Tensor& ids_shuffle, int64_t len_keep);
  // Fills removed positions with the mask token, restores the original order
  // and predicts every patch's pixels: [N, L, p*p*C].
  torch::Tensor Decode(const torch::Tensor& latent, const torch::Tensor& ids_restore);
  // Mean squared error of each patch (mean over its pixels) against the
  // (optionally per-patch normalised) target: [N, L].
  torch::Tensor PerPatchError(const torch::Tensor& imgs, const torch::Tensor& pred);
  // The encoder on all tokens in order, without masking (for k-NN and
  // linear probing).
  EncodedFeatures EncodeFeatures(const torch::Tensor& imgs);

  // [N, C, H, W] -> [N, L, p*p*C] (pixels of a patch in (row, col, channel) order).
  torch::Tensor Patchify(const torch::Tensor& imgs) const;
  // Inverse of Patchify.
  torch::Tensor Unpatchify(const torch::Tensor& patches) const;

  const ModelConfig& config() const { return config_; }

  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;  // [1, 1, D]
  torch::Tensor pos_embed;  // [1, 1 + L, D] buffer
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear decoder_embed{nullptr};
  torch::Tensor mask_token;         // [1, 1, D_dec]
  torch::Tensor decoder_pos_embed;  // [1, 1 + L, D_dec] buffer
  torch::nn::ModuleList decoder_blocks{nullptr};
  torch::nn::LayerNorm decoder_norm{nullptr};
  torch::nn::Linear decoder_pred{nullptr};

 private:
  ModelConfig config_;
};
TORCH_MODULE(MaeVit);

}  // namespace clmae
