#include "worker/engine/model/mae_vit.h"

#include <torch/nn/init.h>
#include <torch/torch.h>

#include "worker/engine/model/pos_embed.h"
#include "worker/engine/model/vit_block.h"

namespace clmae {
namespace {

constexpr double kNormEps = 1e-6;

// Gathers tokens [N, L, D] along dim 1 by `ids` [N, K].
torch::Tensor GatherTokens(const torch::Tensor& x, const torch::Tensor& ids) {
  return torch::gather(x, 1, ids.unsqueeze(-1).expand({-1, -1, x.size(-1)}));
}

}  // namespace

PatchEmbedImpl::PatchEmbedImpl(int64_t in_chans, int64_t embed_dim, int64_t patch_size) {
  proj = register_module(
      "proj", torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in_chans, embed_dim, patch_size).stride(patch_size)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& imgs) {
  return proj(imgs).flatten(2).transpose(1, 2);
}

MaeVitImpl::MaeVitImpl(const ModelConfig& c) : config_(c) {
  const int64_t d = c.embed_dim, dd = c.decoder_embed_dim, grid = c.grid();
  patch_embed = register_module("patch_embed", PatchEmbed(c.in_chans, d, c.patch_size));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, d}));
  pos_embed = register_buffer("pos_embed", SinCosPosEmbed2d(d, grid, grid, true));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.depth; ++i)
    blocks->push_back(VitBlock(d, c.num_heads, c.mlp_ratio, kNormEps));
  norm =
      register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(kNormEps)));

  decoder_embed = register_module("decoder_embed", torch::nn::Linear(d, dd));
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, dd}));
  decoder_pos_embed = register_buffer("decoder_pos_embed", SinCosPosEmbed2d(dd, grid, grid, true));
  decoder_blocks = register_module("decoder_blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.decoder_depth; ++i) {
    decoder_blocks->push_back(VitBlock(dd, c.decoder_num_heads, c.mlp_ratio, kNormEps));
  }
  decoder_norm = register_module(
      "decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dd}).eps(kNormEps)));
  decoder_pred = register_module("decoder_pred", torch::nn::Linear(dd, c.patch_dim()));

  // docs/method.md §2 initialisation.
  InitVitWeights(*this);
  torch::NoGradGuard no_grad;
  auto w = patch_embed->proj->weight;
  torch::nn::init::xavier_uniform_(w.view({w.size(0), -1}));
  torch::nn::init::normal_(cls_token, 0.0, 0.02);
  torch::nn::init::normal_(mask_token, 0.0, 0.02);
}

torch::Tensor MaeVitImpl::Embed(const torch::Tensor& imgs) {
  return patch_embed(imgs) + pos_embed.slice(1, 1);
}

EncoderOutput MaeVitImpl::Encode(const torch::Tensor& x, const torch::Tensor& ids_shuffle,
                                 int64_t len_keep) {
  const int64_t n = x.size(0), l = x.size(1);
  auto ids_restore = torch::argsort(ids_shuffle, /*dim=*/1, /*descending=*/false);
  auto kept = GatherTokens(x, ids_shuffle.slice(1, 0, len_keep));
  auto mask = torch::ones({n, l}, x.options().dtype(torch::kFloat32));
  mask.slice(1, 0, len_keep).zero_();
  mask = torch::gather(mask, 1, ids_restore);

  auto cls = (cls_token + pos_embed.slice(1, 0, 1)).expand({n, -1, -1});
  auto h = torch::cat({cls.to(kept.dtype()), kept}, 1);
  for (const auto& block : *blocks) h = block->as<VitBlock>()->forward(h);
  return {norm(h), mask, ids_restore};
}

torch::Tensor MaeVitImpl::Decode(const torch::Tensor& latent, const torch::Tensor& ids_restore) {
  auto x = decoder_embed(latent);
  const int64_t n = x.size(0), l = ids_restore.size(1);
  auto tokens = x.slice(1, 1);
  const int64_t removed = l - tokens.size(1);
  if (removed > 0) {
    tokens = torch::cat({tokens, mask_token.to(tokens.dtype()).expand({n, removed, -1})}, 1);
  }
  tokens = GatherTokens(tokens, ids_restore);
  x = torch::cat({x.slice(1, 0, 1), tokens}, 1) + decoder_pos_embed;
  for (const auto& block : *decoder_blocks) x = block->as<VitBlock>()->forward(x);
  return decoder_pred(decoder_norm(x)).slice(1, 1);
}

torch::Tensor MaeVitImpl::PerPatchError(const torch::Tensor& imgs, const torch::Tensor& pred) {
  auto target = Patchify(imgs);
  if (config_.norm_pix_loss) {
    auto mean = target.mean(-1, /*keepdim=*/true);
    auto var = target.var(-1, /*unbiased=*/true, /*keepdim=*/true);
    target = (target - mean) / torch::sqrt(var + 1e-6);
  }
  return (pred.to(torch::kFloat32) - target).pow(2).mean(-1);
}

EncodedFeatures MaeVitImpl::EncodeFeatures(const torch::Tensor& imgs) {
  auto x = Embed(imgs);
  const int64_t n = x.size(0), l = x.size(1);
  auto order = torch::arange(l, x.options().dtype(torch::kInt64)).unsqueeze(0).expand({n, l});
  auto latent = Encode(x, order, l).latent;
  return {latent.select(1, 0), latent.slice(1, 1).mean(1)};
}

torch::Tensor MaeVitImpl::Patchify(const torch::Tensor& imgs) const {
  const int64_t p = config_.patch_size, n = imgs.size(0), c = imgs.size(1);
  const int64_t h = imgs.size(2) / p, w = imgs.size(3) / p;
  return imgs.reshape({n, c, h, p, w, p})
      .permute({0, 2, 4, 3, 5, 1})  // n h w p q c
      .reshape({n, h * w, p * p * c});
}

torch::Tensor MaeVitImpl::Unpatchify(const torch::Tensor& patches) const {
  const int64_t p = config_.patch_size, c = config_.in_chans, n = patches.size(0);
  const int64_t g = config_.grid();
  return patches.reshape({n, g, g, p, p, c})
      .permute({0, 5, 1, 3, 2, 4})  // n c h p w q
      .reshape({n, c, g * p, g * p});
}

}  // namespace clmae
