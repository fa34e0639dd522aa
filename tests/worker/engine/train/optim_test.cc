#include "worker/engine/train/optim.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/worker/engine/small_model_config.h"
#include "worker/engine/model/mae_vit.h"

namespace clmae {
namespace {

TEST(OptimTest, DecayGroups) {
  EXPECT_TRUE(IsDecayed("blocks.0.attn.qkv.weight", torch::zeros({6, 2}), true));
  EXPECT_FALSE(IsDecayed("blocks.0.attn.qkv.bias", torch::zeros({6}), true));
  EXPECT_FALSE(IsDecayed("norm.weight", torch::zeros({6}), true));
  EXPECT_TRUE(IsDecayed("cls_token", torch::zeros({1, 1, 6}), true));  // the reference
  EXPECT_FALSE(IsDecayed("cls_token", torch::zeros({1, 1, 6}), false));
  EXPECT_FALSE(IsDecayed("mask_token", torch::zeros({1, 1, 6}), false));
  EXPECT_TRUE(IsDecayed("patch_embed.proj.weight", torch::zeros({6, 1, 2, 2}), false));
}

TEST(OptimTest, AdamWHoldsEveryTrainableParameterOnce) {
  MaeVit mae(testutil::SmallModelConfig());
  auto opt = MakeAdamW(*mae, {});
  ASSERT_EQ(opt->param_groups().size(), 2u);
  const auto& decayed = opt->param_groups()[0];
  const auto& plain = opt->param_groups()[1];
  EXPECT_EQ(decayed.params().size() + plain.params().size(), mae->parameters().size());
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(decayed.options()).weight_decay(),
                   0.05);
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(plain.options()).weight_decay(),
                   0.0);
  auto betas = static_cast<const torch::optim::AdamWOptions&>(decayed.options()).betas();
  EXPECT_DOUBLE_EQ(std::get<1>(betas), 0.95);
  SetLearningRate(*opt, 0.25);
  EXPECT_DOUBLE_EQ(
      static_cast<const torch::optim::AdamWOptions&>(opt->param_groups()[1].options()).lr(), 0.25);
}

}  // namespace
}  // namespace clmae

namespace clmae {
namespace {

TEST(OptimTest, ClipGradNormReportsAndClips) {
  auto a = torch::zeros({2}, torch::requires_grad());
  auto b = torch::zeros({1}, torch::requires_grad());
  auto c = torch::zeros({1}, torch::requires_grad());  // no gradient
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 0.0), 5.0, 1e-6);  // no clipping
  EXPECT_FLOAT_EQ(b.grad().item<float>(), 4.0f);
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 1.0), 5.0, 1e-6);  // reports the norm before clipping
  EXPECT_NEAR(torch::cat({a.grad(), b.grad()}).norm().item<double>(), 1.0, 1e-5);
}

// The fused CUDA step follows LibTorch's AdamW (GPU only; skipped without one).
TEST(OptimTest, FusedCudaStepMatchesLibTorchAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  torch::nn::Linear cpu(8, 4), gpu(8, 4);
  {
    torch::NoGradGuard no_grad;
    gpu->weight.copy_(cpu->weight);
    gpu->bias.copy_(cpu->bias);
  }
  gpu->to(torch::kCUDA);
  auto o1 = MakeAdamW(*cpu, {});
  auto o2 = MakeAdamW(*gpu, {});
  SetLearningRate(*o1, 1e-2);
  SetLearningRate(*o2, 1e-2);
  for (int i = 0; i < 3; ++i) {
    auto x = torch::randn({5, 8});
    cpu(x).pow(2).sum().backward();
    gpu(x.cuda()).pow(2).sum().backward();
    AdamWStep(*o1);
    AdamWStep(*o2);
    o1->zero_grad();
    o2->zero_grad();
  }
  EXPECT_TRUE(torch::allclose(cpu->weight, gpu->weight.cpu(), 1e-5, 1e-6));
}

}  // namespace
}  // namespace clmae
