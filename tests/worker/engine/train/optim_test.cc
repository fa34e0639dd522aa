#include "worker/engine/train/optim.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "worker/engine/model/mae_vit.h"

namespace clmae {
namespace {

TEST(OptimTest, DecayGroups) {
  EXPECT_TRUE(IsDecayed("blocks.0.attn.qkv.weight", torch::zeros({6, 2}), true));
  EXPECT_FALSE(IsDecayed("blocks.0.attn.qkv.bias", torch::zeros({6}), true));
  EXPECT_FALSE(IsDecayed("norm.weight", torch::zeros({6}), true));
  EXPECT_TRUE(IsDecayed("cls_token", torch::zeros({1, 1, 6}), true));   // the reference
  EXPECT_FALSE(IsDecayed("cls_token", torch::zeros({1, 1, 6}), false));
  EXPECT_FALSE(IsDecayed("mask_token", torch::zeros({1, 1, 6}), false));
  EXPECT_TRUE(IsDecayed("patch_embed.proj.weight", torch::zeros({6, 1, 2, 2}), false));
}

TEST(OptimTest, AdamWHoldsEveryTrainableParameterOnce) {
  ModelConfig c;
  c.img_size = 8;
  c.in_chans = 1;
  c.patch_size = 4;
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 2;
  c.decoder_embed_dim = 8;
  c.decoder_depth = 1;
  c.decoder_num_heads = 2;
  MaeVit mae(c);
  auto opt = MakeAdamW(*mae, {});
  ASSERT_EQ(opt->param_groups().size(), 2u);
  const auto& decayed = opt->param_groups()[0];
  const auto& plain = opt->param_groups()[1];
  EXPECT_EQ(decayed.params().size() + plain.params().size(), mae->parameters().size());
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(decayed.options()).weight_decay(), 0.05);
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(plain.options()).weight_decay(), 0.0);
  auto betas = static_cast<const torch::optim::AdamWOptions&>(decayed.options()).betas();
  EXPECT_DOUBLE_EQ(std::get<1>(betas), 0.95);
  SetLearningRate(*opt, 0.25);
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(opt->param_groups()[1].options()).lr(), 0.25);
}

}  // namespace
}  // namespace clmae
