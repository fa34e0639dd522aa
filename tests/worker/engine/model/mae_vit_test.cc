#include "worker/engine/model/mae_vit.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/worker/engine/small_model_config.h"
#include "worker/engine/model/masking_net.h"
#include "worker/engine/model/vit_block.h"

namespace clmae {
namespace {

ModelConfig Small() {
  auto c = testutil::SmallModelConfig(/*in_chans=*/2);
  c.depth = 2;
  return c;
}

class MaeVitTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
  ModelConfig config_ = Small();
  MaeVit mae_{config_};
};

TEST_F(MaeVitTest, ShapesThroughEveryPiece) {
  auto imgs = torch::randn({3, 2, 8, 8});
  auto x = mae_->Embed(imgs);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3, 16, 16}));
  auto ids = torch::argsort(torch::rand({3, 16}), 1, false);
  auto enc = mae_->Encode(x, ids, 4);
  EXPECT_EQ(enc.latent.sizes(), (std::vector<int64_t>{3, 5, 16}));
  EXPECT_EQ(enc.mask.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_EQ(enc.mask.sum().item<float>(), 3 * 12);
  auto pred = mae_->Decode(enc.latent, enc.ids_restore);
  EXPECT_EQ(pred.sizes(), (std::vector<int64_t>{3, 16, 8}));
  EXPECT_EQ(mae_->PerPatchError(imgs, pred).sizes(), (std::vector<int64_t>{3, 16}));
  auto features = mae_->EncodeFeatures(imgs);
  EXPECT_EQ(features.cls.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_EQ(features.patch_mean.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_FALSE(torch::allclose(features.cls, features.patch_mean));
}

TEST_F(MaeVitTest, MaskRemovesExactlyTheTokensRankedLast) {
  auto x = mae_->Embed(torch::randn({1, 2, 8, 8}));
  auto ids = torch::arange(15, -1, -1).unsqueeze(0);  // keep 15, 14, 13, 12
  auto enc = mae_->Encode(x, ids, 4);
  auto expected = torch::ones({1, 16});
  expected.slice(1, 12, 16).zero_();
  EXPECT_TRUE(torch::equal(enc.mask, expected));
}

TEST_F(MaeVitTest, PatchifyRoundTripsAndOrdersPixelsRowColChannel) {
  auto imgs = torch::randn({2, 2, 8, 8});
  auto patches = mae_->Patchify(imgs);
  EXPECT_EQ(patches.sizes(), (std::vector<int64_t>{2, 16, 8}));
  EXPECT_TRUE(torch::equal(mae_->Unpatchify(patches), imgs));
  // Patch 5 = grid row 1, col 1; its element (p=1, q=0, c=1) is pixel (3, 2) of channel 1.
  EXPECT_EQ(patches[0][5][(1 * 2 + 0) * 2 + 1].item<float>(), imgs[0][1][3][2].item<float>());
}

TEST_F(MaeVitTest, InitialisationFollowsTheMethod) {
  EXPECT_TRUE(torch::equal(mae_->pos_embed[0][0], torch::zeros({16})));
  for (const auto& p : mae_->named_parameters()) {
    if (p.key().find("norm") != std::string::npos && p.key().ends_with("weight")) {
      EXPECT_TRUE(torch::equal(p.value(), torch::ones_like(p.value()))) << p.key();
    }
    if (p.key().ends_with("qkv.bias") || p.key().ends_with("fc1.bias")) {
      EXPECT_TRUE(torch::equal(p.value(), torch::zeros_like(p.value()))) << p.key();
    }
  }
  // Xavier-uniform bound for fc1 of the first block: sqrt(6 / (16 + 64)).
  auto w = mae_->named_parameters()["blocks.0.mlp.fc1.weight"];
  EXPECT_LE(w.abs().max().item<double>(), std::sqrt(6.0 / 80.0) + 1e-6);
  // Position embeddings are buffers, not trained.
  EXPECT_EQ(mae_->named_parameters().find("pos_embed"), nullptr);
  EXPECT_NE(mae_->named_buffers().find("decoder_pos_embed"), nullptr);
}

TEST_F(MaeVitTest, ReferenceParameterNames) {
  auto params = mae_->named_parameters();
  for (const char* key :
       {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "blocks.1.norm1.weight",
        "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.mlp.fc2.bias",
        "norm.weight", "decoder_embed.weight", "mask_token", "decoder_blocks.0.norm2.bias",
        "decoder_norm.weight", "decoder_pred.bias"}) {
    EXPECT_NE(params.find(key), nullptr) << key;
  }
  MaskingNet masker(config_);
  auto mp = masker->named_parameters();
  for (const char* key :
       {"cls_token", "blocks.0.attn.qkv.weight", "mlp_head.0.weight", "mlp_head.1.bias"}) {
    EXPECT_NE(mp.find(key), nullptr) << key;
  }
}

TEST_F(MaeVitTest, NormPixLossNormalisesEachPatch) {
  auto c = config_;
  c.norm_pix_loss = true;
  MaeVit mae(c);
  auto imgs = torch::randn({1, 2, 8, 8}) * 5 + 3;
  auto target = mae->Patchify(imgs);
  auto normed = (target - target.mean(-1, true)) / torch::sqrt(target.var(-1, true, true) + 1e-6);
  // Predicting the normalised target exactly gives zero error.
  EXPECT_LT(mae->PerPatchError(imgs, normed).abs().max().item<float>(), 1e-5);
}

TEST(MaskingNetTest, ScoresInUnitIntervalPerPatch) {
  torch::manual_seed(0);
  auto c = Small();
  MaskingNet masker(c);
  auto m = masker->forward(torch::randn({5, 16, 16}));
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_GT(m.min().item<float>(), 0);
  EXPECT_LT(m.max().item<float>(), 1);
}

TEST(MaskingNetTest, LayerNormEpsIsTheMaskersOwn) {
  auto c = Small();
  MaskingNet masker(c);
  MaeVit mae(c);
  auto* masker_block = masker->blocks[0]->as<VitBlock>();
  auto* mae_block = mae->blocks[0]->as<VitBlock>();
  ASSERT_NE(masker_block, nullptr);
  EXPECT_DOUBLE_EQ(masker_block->norm1->options.eps(), 1e-5);
  EXPECT_DOUBLE_EQ(mae_block->norm1->options.eps(), 1e-6);
}

}  // namespace
}  // namespace clmae
