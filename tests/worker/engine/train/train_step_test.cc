#include "worker/engine/train/train_step.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <limits>
#include <map>

#include "tests/worker/engine/small_model_config.h"
#include "worker/engine/model/losses.h"
#include "worker/engine/train/optim.h"

namespace clmae {
namespace {

ModelConfig Small() { return testutil::SmallModelConfig(); }

std::map<std::string, torch::Tensor> Snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// Names of parameters that differ from the snapshot.
std::vector<std::string> Changed(torch::nn::Module& m,
                                 const std::map<std::string, torch::Tensor>& before) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) {
    if (!torch::equal(p.value(), before.at(p.key()))) out.push_back(p.key());
  }
  return out;
}

class TrainStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    mae_ = MaeVit(Small());
    masker_ = MaskingNet(Small());
    mae_opt_ = MakeAdamW(*mae_, {});
    masker_opt_ = MakeAdamW(*masker_, {});
    SetLearningRate(*mae_opt_, 1e-3);
    SetLearningRate(*masker_opt_, 1e-3);
    imgs_ = torch::randn({4, 1, 8, 8});
  }
  MaeVit mae_{nullptr};
  MaskingNet masker_{nullptr};
  std::unique_ptr<torch::optim::AdamW> mae_opt_, masker_opt_;
  LocalCollectives local_;
  torch::Tensor imgs_;
};

// Phase A on its own, written out: gradients of the MAE only.
void ManualPhaseA(MaeVit& mae, MaskingNet& masker, const torch::Tensor& imgs) {
  auto x = mae->Embed(imgs);
  torch::Tensor ids;
  {
    torch::NoGradGuard no_grad;
    ids = torch::argsort(masker->forward(x.detach()), 1, true);
  }
  auto enc = mae->Encode(x, ids, 4);
  MaskedReconstructionLoss(mae->PerPatchError(imgs, mae->Decode(enc.latent, enc.ids_restore)),
                           enc.mask)
      .backward();
}

// Phase B on its own, written out: gradients of the masker only.
void ManualPhaseB(MaeVit& mae, MaskingNet& masker, const torch::Tensor& imgs, double lambda_cl) {
  for (auto& p : mae->parameters()) p.requires_grad_(false);
  auto x = mae->Embed(imgs);
  auto m = masker->forward(x);
  auto ids = torch::argsort(m.detach(), 1, true);
  auto enc = mae->Encode(x * m.unsqueeze(-1), ids, 16);
  auto e = mae->PerPatchError(imgs, mae->Decode(enc.latent, enc.ids_restore));
  ComputeMaskerLoss(e, m, lambda_cl, 0.25, {}).total.backward();
  for (auto& p : mae->parameters()) p.requires_grad_(true);
}

std::map<std::string, torch::Tensor> Grads(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) {
    if (p.value().grad().defined()) out[p.key()] = p.value().grad().clone();
  }
  return out;
}

void ClearGrads(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
}

void ExpectSameGrads(const std::map<std::string, torch::Tensor>& a,
                     const std::map<std::string, torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, g] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::allclose(g, b.at(name), 1e-5, 1e-7)) << name;
  }
}

// Without an optimizer step, the gradients a full iteration leaves are
// exactly phase A's on the MAE and phase B's on the masker: neither phase
// leaks gradient into the frozen network.
TEST_F(TrainStepTest, EachPhaseGradientsOnlyItsNetwork) {
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  ASSERT_TRUE(step.RunAndRead(imgs_, -0.5, 0, /*apply=*/false).ok());
  auto mae_grads = Grads(*mae_);
  auto masker_grads = Grads(*masker_);
  EXPECT_EQ(mae_grads.size(), mae_->parameters().size());
  EXPECT_EQ(masker_grads.size(), masker_->parameters().size());
  for (const auto& p : mae_->parameters()) EXPECT_TRUE(p.requires_grad());

  ClearGrads(*mae_);
  ClearGrads(*masker_);
  ManualPhaseA(mae_, masker_, imgs_);
  EXPECT_TRUE(Grads(*masker_).empty());
  ExpectSameGrads(mae_grads, Grads(*mae_));
  ClearGrads(*mae_);
  ManualPhaseB(mae_, masker_, imgs_, -0.5);
  EXPECT_TRUE(Grads(*mae_).empty());
  ExpectSameGrads(masker_grads, Grads(*masker_));
}

// With the steps applied, phase A moves every MAE parameter and leaves the
// masker bit-identical; phase B then moves the masker and leaves the MAE
// bit-identical (checked by stepping each phase's optimizer alone).
TEST_F(TrainStepTest, EachPhaseStepsOnlyItsNetwork) {
  auto mae_before = Snapshot(*mae_);
  auto masker_before = Snapshot(*masker_);
  SetLearningRate(*masker_opt_, 0.0);  // only phase A's update can move anything
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  ASSERT_TRUE(step.RunAndRead(imgs_, 1.0, 0, true).ok());
  EXPECT_EQ(Changed(*masker_, masker_before).size(), 0u);
  EXPECT_EQ(Changed(*mae_, mae_before).size(), mae_->parameters().size());

  auto mae_after_a = Snapshot(*mae_);
  SetLearningRate(*masker_opt_, 1e-3);
  SetLearningRate(*mae_opt_, 0.0);  // only phase B's update can move anything
  ASSERT_TRUE(step.RunAndRead(imgs_, 1.0, 1, true).ok());
  EXPECT_EQ(Changed(*mae_, mae_after_a).size(), 0u);
  EXPECT_EQ(Changed(*masker_, masker_before).size(), masker_->parameters().size());
}

TEST_F(TrainStepTest, StatsReportEveryLossTerm) {
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  auto stats = step.RunAndRead(imgs_, 0.3, 0, true);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->loss_mae, 0);
  EXPECT_GT(stats->masker_rec, 0);
  EXPECT_GT(stats->masker_gauss, 0);
  EXPECT_GT(stats->masker_div, 0);
  EXPECT_NEAR(stats->masker_total,
              0.3 * stats->masker_rec + stats->masker_gauss + stats->masker_kl + stats->masker_div,
              1e-4);
  EXPECT_GT(stats->mask_mean_score, 0);
  EXPECT_LT(stats->mask_mean_score, 1);
  EXPECT_GT(stats->grad_norm_mae, 0);
  EXPECT_GT(stats->grad_norm_masker, 0);
  EXPECT_EQ(step.len_keep(), 4);  // floor(16 * 0.25)
}

TEST_F(TrainStepTest, PlainMaeTouchesNoMaskerAndIsDeterministicPerStep) {
  TwoPhaseStep step(mae_, MaskingNet(nullptr), mae_opt_.get(), nullptr, &local_, {});
  EXPECT_TRUE(step.plain_mae());
  auto stats = step.RunAndRead(imgs_, 1.0, 7, true);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->masker_total, 0);
  auto a = RandomMaskOrder(torch::arange(4), 16, 0, 7, torch::kCPU);
  auto b = RandomMaskOrder(torch::arange(4), 16, 0, 7, torch::kCPU);
  auto c = RandomMaskOrder(torch::arange(4), 16, 0, 8, torch::kCPU);
  auto d = RandomMaskOrder(torch::arange(4, 8), 16, 0, 7, torch::kCPU);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a, d));
  // A sample's mask depends on the sample, not on its place in the batch.
  auto e = RandomMaskOrder(torch::tensor({9, 2}, torch::kInt64), 16, 0, 7, torch::kCPU);
  auto f = RandomMaskOrder(torch::tensor({2, 5, 9}, torch::kInt64), 16, 0, 7, torch::kCPU);
  EXPECT_TRUE(torch::equal(e[0], f[2]));
  EXPECT_TRUE(torch::equal(e[1], f[0]));
  // A permutation per row.
  EXPECT_TRUE(torch::equal(std::get<0>(a.sort(1)), torch::arange(16).expand({4, 16})));
}

// A non-finite loss is found on the device: Run queues the step without
// complaint, CheckFinite names the step and phase, and no weight of either
// network moved, neither at that step nor at the good ones after it.
TEST_F(TrainStepTest, NonFiniteLossIsRefusedOnTheDeviceAndNamedByCheckFinite) {
  auto mae_before = Snapshot(*mae_);
  auto masker_before = Snapshot(*masker_);
  auto bad = imgs_.clone();
  bad[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  auto pending = step.Run(bad, 1.0, 42, true);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_TRUE(step.Run(imgs_, 1.0, 43, true).ok());
  const absl::Status status = step.CheckFinite();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("MAE loss (nan) at step 42 in phase A"), std::string::npos)
      << status;
  EXPECT_TRUE(Changed(*mae_, mae_before).empty());
  EXPECT_TRUE(Changed(*masker_, masker_before).empty());
  // The optimizers' moments did not move either.
  for (auto* opt : {mae_opt_.get(), masker_opt_.get()}) {
    for (const auto& [key, state] : opt->state()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
      EXPECT_EQ(s.exp_avg().abs().max().item<float>(), 0.0f);
    }
  }
  // RunAndRead reports the same.
  EXPECT_EQ(step.RunAndRead(imgs_, 1.0, 44, true).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A non-finite masker loss (here from the curriculum factor) is refused in
// phase B: the MAE's step of phase A went through, the masker did not move.
TEST_F(TrainStepTest, NonFiniteMaskerLossRefusesPhaseBOnly) {
  auto mae_before = Snapshot(*mae_);
  auto masker_before = Snapshot(*masker_);
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  auto stats = step.RunAndRead(imgs_, std::numeric_limits<double>::infinity(), 3, true);
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("at step 3 in phase B"), std::string::npos)
      << stats.status();
  EXPECT_FALSE(Changed(*mae_, mae_before).empty());
  EXPECT_TRUE(Changed(*masker_, masker_before).empty());
}

// Figures read for several queued steps at once are those each step had.
TEST_F(TrainStepTest, ReadingQueuedStepsTogetherGivesEachStepsFigures) {
  auto mae2 = MaeVit(Small());
  auto masker2 = MaskingNet(Small());
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < mae_->parameters().size(); ++i)
      mae2->parameters()[i].copy_(mae_->parameters()[i]);
    for (size_t i = 0; i < masker_->parameters().size(); ++i)
      masker2->parameters()[i].copy_(masker_->parameters()[i]);
  }
  auto o1 = MakeAdamW(*mae2, {}), o2 = MakeAdamW(*masker2, {});
  SetLearningRate(*o1, 1e-3);
  SetLearningRate(*o2, 1e-3);
  TwoPhaseStep queued(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, {});
  TwoPhaseStep one_by_one(mae2, masker2, o1.get(), o2.get(), &local_, {});
  std::vector<PendingStep> pending;
  std::vector<StepStats> expected;
  for (int i = 0; i < 3; ++i) {
    auto p = queued.Run(imgs_, 0.5, i, true);
    ASSERT_TRUE(p.ok());
    pending.push_back(std::move(*p));
    auto s = one_by_one.RunAndRead(imgs_, 0.5, i, true);
    ASSERT_TRUE(s.ok());
    expected.push_back(*s);
  }
  ASSERT_TRUE(queued.CheckFinite().ok());
  auto got = TwoPhaseStep::Read(pending);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(got[i].loss_mae, expected[i].loss_mae) << i;
    EXPECT_FLOAT_EQ(got[i].masker_total, expected[i].masker_total) << i;
    EXPECT_FLOAT_EQ(got[i].grad_norm_mae, expected[i].grad_norm_mae) << i;
    EXPECT_FLOAT_EQ(got[i].mask_near_binary, expected[i].mask_near_binary) << i;
    EXPECT_TRUE(got[i].stepped);
    EXPECT_GE(got[i].device_seconds, got[i].phase_a_seconds);
  }
  EXPECT_NE(got[0].loss_mae, got[2].loss_mae);  // the steps trained
}

// Accumulation: no step before the window's last micro-batch; after it both
// networks have stepped and their gradients are cleared.
TEST_F(TrainStepTest, AccumulationStepsOnlyAtTheWindowEnd) {
  StepOptions o;
  o.accum_iter = 2;
  auto before = Snapshot(*mae_);
  TwoPhaseStep step(mae_, masker_, mae_opt_.get(), masker_opt_.get(), &local_, o);
  ASSERT_TRUE(step.RunAndRead(imgs_.slice(0, 0, 2), 1.0, 0, /*apply=*/false).ok());
  EXPECT_TRUE(Changed(*mae_, before).empty());
  ASSERT_TRUE(step.RunAndRead(imgs_.slice(0, 2, 4), 1.0, 1, /*apply=*/true).ok());
  EXPECT_FALSE(Changed(*mae_, before).empty());
  for (const auto& p : mae_->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : masker_->parameters()) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace clmae

namespace clmae {
namespace {

// Losses of `steps` iterations from seed-0 networks on `device`, with or
// without CUDA graphs, read once at the end; the lr and the curriculum
// factor change every iteration (the graph must read the new values).
std::vector<double> Trace(const torch::Device& device, bool graphs, int steps,
                          std::string* off_reason = nullptr) {
  torch::manual_seed(0);
  MaeVit mae(Small());
  MaskingNet masker(Small());
  mae->to(device);
  masker->to(device);
  auto o1 = MakeAdamW(*mae, {}), o2 = MakeAdamW(*masker, {});
  LocalCollectives local;
  StepOptions so;
  so.cuda_graphs = graphs;
  TwoPhaseStep step(mae, masker, o1.get(), o2.get(), &local, so);
  if (off_reason != nullptr) *off_reason = step.graphs_off_reason(device);
  std::vector<PendingStep> pending;
  for (int i = 0; i < steps; ++i) {
    torch::manual_seed(100 + i);
    auto imgs = torch::randn({4, 1, 8, 8}).to(device);
    SetLearningRate(*o1, 1e-3 * (1 + i % 3));
    SetLearningRate(*o2, 1e-3 * (1 + i % 3));
    auto p = step.Run(imgs, 1.0 - 0.1 * i, i, true);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    pending.push_back(std::move(*p));
  }
  EXPECT_TRUE(step.CheckFinite().ok());
  std::vector<double> out;
  for (const auto& s : TwoPhaseStep::Read(pending)) {
    out.push_back(s.loss_mae);
    out.push_back(s.masker_total);
  }
  if (graphs && device.is_cuda()) EXPECT_GT(step.graph_replays(), 0);
  return out;
}

// Asked for on the CPU, CUDA graphs say why they are off and change nothing.
TEST(TrainStepGraphsTest, OnTheCpuGraphsAreOffAndTheRunIsTheEagerOne) {
  std::string reason;
  const auto graphed = Trace(torch::kCPU, true, 6, &reason);
  EXPECT_EQ(reason, "not on a CUDA device");
  EXPECT_EQ(graphed, Trace(torch::kCPU, false, 6));
}

// GPU only (skipped without one): 20 graphed iterations (3 eager warm-up,
// one capture, replays) give the eager run's losses to 1e-6 in fp32.
TEST(TrainStepGraphsTest, GraphedRunEqualsEagerOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto eager = Trace(torch::kCUDA, false, 20);
  const auto graphed = Trace(torch::kCUDA, true, 20);
  ASSERT_EQ(eager.size(), graphed.size());
  for (size_t i = 0; i < eager.size(); ++i) {
    EXPECT_NEAR(graphed[i], eager[i], 1e-6 * std::max(1.0, std::abs(eager[i]))) << i;
  }
}

}  // namespace
}  // namespace clmae
