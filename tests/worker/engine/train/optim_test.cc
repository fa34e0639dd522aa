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
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 0.0).item<double>(), 5.0, 1e-6);  // no clipping
  EXPECT_FLOAT_EQ(b.grad().item<float>(), 4.0f);
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 10.0).item<double>(), 5.0, 1e-6);  // under the limit
  EXPECT_FLOAT_EQ(b.grad().item<float>(), 4.0f);
  // Reports the norm before clipping.
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 1.0).item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(torch::cat({a.grad(), b.grad()}).norm().item<double>(), 1.0, 1e-5);
  EXPECT_FALSE(ClipGradNorm({c}, 1.0).defined());
}

// Two linear layers with the same weights trained side by side, one by
// LibTorch's AdamW and one by AdamWStepper on `device`.
void ExpectStepperMatchesLibTorch(const torch::Device& device) {
  torch::manual_seed(0);
  torch::nn::Linear ref(8, 4), fused(8, 4);
  {
    torch::NoGradGuard no_grad;
    fused->weight.copy_(ref->weight);
    fused->bias.copy_(ref->bias);
  }
  fused->to(device);
  auto o1 = MakeAdamW(*ref, {});
  auto o2 = MakeAdamW(*fused, {});
  SetLearningRate(*o1, 1e-2);
  SetLearningRate(*o2, 1e-2);
  AdamWStepper stepper(o2.get());
  for (int i = 0; i < 3; ++i) {
    auto x = torch::randn({5, 8});
    ref(x).pow(2).sum().backward();
    fused(x.to(device)).pow(2).sum().backward();
    o1->step();
    stepper.Step();
    o1->zero_grad();
    o2->zero_grad();
  }
  EXPECT_TRUE(torch::allclose(ref->weight, fused->weight.cpu(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ref->bias, fused->bias.cpu(), 1e-5, 1e-6));
  // The same state as LibTorch's: step counts and moments (checkpoints).
  for (const auto& p : ref->parameters()) {
    const auto& s1 =
        static_cast<const torch::optim::AdamWParamState&>(*o1->state()[p.unsafeGetTensorImpl()]);
    EXPECT_EQ(s1.step(), 3);
  }
  for (const auto& p : fused->parameters()) {
    const auto& s2 =
        static_cast<const torch::optim::AdamWParamState&>(*o2->state()[p.unsafeGetTensorImpl()]);
    EXPECT_EQ(s2.step(), 3);
  }
}

TEST(OptimTest, StepperOnTheCpuMatchesLibTorchAdamW) { ExpectStepperMatchesLibTorch(torch::kCPU); }

// GPU only; skipped without one.
TEST(OptimTest, StepperOnCudaMatchesLibTorchAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ExpectStepperMatchesLibTorch(torch::kCUDA);
}

// found_inf refuses the step on the device: weights and moments unchanged.
TEST(OptimTest, StepperRefusesAStepWhereFoundInfIsSet) {
  torch::manual_seed(0);
  torch::nn::Linear net(8, 4);
  auto opt = MakeAdamW(*net, {});
  SetLearningRate(*opt, 1e-2);
  AdamWStepper stepper(opt.get());
  auto before = net->weight.detach().clone();
  net(torch::randn({5, 8})).pow(2).sum().backward();
  stepper.Step(torch::ones({}));
  EXPECT_TRUE(torch::equal(before, net->weight));
  const auto& s = static_cast<const torch::optim::AdamWParamState&>(
      *opt->state()[net->weight.unsafeGetTensorImpl()]);
  EXPECT_EQ(s.exp_avg().abs().max().item<float>(), 0.0f);
  stepper.Step(torch::zeros({}));
  EXPECT_FALSE(torch::equal(before, net->weight));
}

// A checkpoint loaded into the optimizer moves the host step counts; the
// stepper follows them (the bias correction uses the loaded count).
TEST(OptimTest, StepperFollowsStepCountsLoadedIntoTheOptimizer) {
  torch::manual_seed(0);
  torch::nn::Linear a(4, 2), b(4, 2);
  {
    torch::NoGradGuard no_grad;
    b->weight.copy_(a->weight);
    b->bias.copy_(a->bias);
  }
  auto oa = MakeAdamW(*a, {}), ob = MakeAdamW(*b, {});
  SetLearningRate(*oa, 1e-2);
  SetLearningRate(*ob, 1e-2);
  AdamWStepper sa(oa.get()), sb(ob.get());
  auto x = torch::randn({3, 4});
  for (int i = 0; i < 2; ++i) {
    a(x).sum().backward();
    sa.Step();
    oa->zero_grad();
  }
  b(x).sum().backward();
  sb.Step();  // b's mirror now says step 1
  ob->zero_grad();
  // Give b a's weights and optimizer state, as loading a checkpoint does.
  {
    torch::NoGradGuard no_grad;
    b->weight.copy_(a->weight);
    b->bias.copy_(a->bias);
  }
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    const auto& src = static_cast<const torch::optim::AdamWParamState&>(
        *oa->state()[a->parameters()[i].unsafeGetTensorImpl()]);
    auto& dst = static_cast<torch::optim::AdamWParamState&>(
        *ob->state()[b->parameters()[i].unsafeGetTensorImpl()]);
    dst.step(src.step());
    dst.exp_avg(src.exp_avg().clone());
    dst.exp_avg_sq(src.exp_avg_sq().clone());
  }
  a(x).sum().backward();
  b(x).sum().backward();
  sa.Step();
  sb.Step();
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
}

}  // namespace
}  // namespace clmae
