#include "worker/train/trainer_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "common/metrics_server.h"
#include "prometheus/registry.h"
#include "tests/services/promtool_check.h"
#include "tests/testing/tiny_trainer_options.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// The value of the sample line `series` ("name{labels}"), or NaN.
double Value(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nan("");
}

// The labels of `l` (job, rank) with the phase, in exposition (sorted) order.
std::string ByPhase(const std::string& l, const std::string& phase) {
  const size_t rank = l.find(",rank=");
  return l.substr(0, rank) + ",phase=\"" + phase + "\"" + l.substr(rank);
}

class TrainerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("trainer-metrics-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Scrape() { return ExpositionText({registry_}); }

  // The tiny job, stopped after 4 iterations, logging every other one.
  TrainerOptions Tiny() {
    TrainerOptions o = ::clmae::testing::TinyTrainerOptions((dir_ / "out").string());
    o.max_steps = 4;
    o.log_every = 2;
    return o;
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  fs::path dir_;
};

TEST_F(TrainerMetricsTest, AnIterationSetsEveryFamilyWithJobAndRank) {
  TrainerMetrics metrics(*registry_, {.job = "job-1", .rank = 1, .world_size = 2});
  metrics.OnStart(10, 100);
  StepReport r;
  r.step = 11;
  r.total_steps = 100;
  r.epoch = 2;
  r.lambda_cl = -0.5;
  r.lr = 0.25;
  r.data_seconds = 0.002;
  r.step_seconds = 0.3;
  r.images_seen = 11 * 16;  // 8 per rank and step, 2 ranks
  r.stats.loss_mae = 0.75;
  r.stats.masker_rec = 0.5;
  r.stats.masker_gauss = 1;
  r.stats.masker_kl = 2;
  r.stats.masker_div = 3;
  r.stats.masker_total = -4;
  r.stats.mask_mean_score = 0.4;
  r.stats.mask_near_binary = 0.125;
  r.stats.stepped = true;
  r.stats.grad_norm_mae = 1.5;
  r.stats.grad_norm_masker = 2.5;
  r.stats.phase_a_seconds = 0.1;
  r.stats.phase_b_seconds = 0.15;
  r.stats.optimizer_seconds = 0.04;
  r.stats.comm_wait_seconds = 0.01;
  metrics.OnIteration(r);
  r.step = 12;
  r.images_seen = 12 * 16;
  r.mask_overlap = 0.875;
  metrics.OnIteration(r);

  const std::string text = Scrape();
  const std::string l = "job=\"job-1\",rank=\"1\"";
  EXPECT_EQ(Value(text, "clmae_trainer_curriculum_factor{" + l + "}"), -0.5);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"mae\"}"), 0.75);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"masker_recon\"}"), 0.5);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"gauss\"}"), 1);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"kl\"}"), 2);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"div\"}"), 3);
  EXPECT_EQ(Value(text, "clmae_trainer_loss{" + l + ",term=\"masker_total\"}"), -4);
  EXPECT_EQ(Value(text, "clmae_trainer_learning_rate{" + l + "}"), 0.25);
  EXPECT_EQ(Value(text, "clmae_trainer_step{" + l + "}"), 12);
  EXPECT_EQ(Value(text, "clmae_trainer_epoch{" + l + "}"), 2);
  EXPECT_EQ(Value(text, "clmae_trainer_total_steps{" + l + "}"), 100);
  EXPECT_EQ(Value(text, "clmae_trainer_images_total{" + l + "}"), 16);  // 2 steps x 8
  EXPECT_EQ(Value(text, "clmae_trainer_step_seconds_count{" + l + "}"), 2);
  EXPECT_EQ(Value(text, "clmae_trainer_step_phase_seconds_count{" + ByPhase(l, "data") + "}"), 2);
  EXPECT_EQ(Value(text, "clmae_trainer_step_phase_seconds_bucket{" + ByPhase(l, "phase_a") +
                            ",le=\"0.1\"}"),
            2);
  EXPECT_EQ(Value(text, "clmae_trainer_step_phase_seconds_bucket{" + ByPhase(l, "phase_b") +
                            ",le=\"0.1\"}"),
            0);
  EXPECT_EQ(
      Value(text, "clmae_trainer_step_phase_seconds_sum{" + ByPhase(l, "allreduce_wait") + "}"),
      0.02);
  EXPECT_EQ(Value(text, "clmae_trainer_step_phase_seconds_count{" + ByPhase(l, "optimizer") + "}"),
            2);
  EXPECT_EQ(Value(text, "clmae_trainer_mask_keep_score_mean{" + l + "}"), 0.4);
  EXPECT_EQ(Value(text, "clmae_trainer_mask_near_binary_ratio{" + l + "}"), 0.125);
  EXPECT_EQ(Value(text, "clmae_trainer_mask_overlap_ratio{" + l + "}"), 0.875);
  EXPECT_EQ(Value(text, "clmae_trainer_grad_norm{job=\"job-1\",network=\"mae\",rank=\"1\"}"), 1.5);
  EXPECT_EQ(Value(text, "clmae_trainer_grad_norm{job=\"job-1\",network=\"masker\",rank=\"1\"}"),
            2.5);
  EXPECT_GT(Value(text, "clmae_trainer_device_memory_bytes{job=\"job-1\",kind=\"rss\",rank=\"1\"}"),
            1 << 20);
}

TEST_F(TrainerMetricsTest, OverlapIsAbsentUntilMeasured) {
  TrainerMetrics metrics(*registry_, {.job = "j", .rank = 0});
  StepReport r;
  r.step = 1;
  metrics.OnIteration(r);
  EXPECT_THAT(Scrape(), Not(HasSubstr("clmae_trainer_mask_overlap_ratio{")));
}

TEST_F(TrainerMetricsTest, ATinyRunReportsStepsImagesAndMaskOverlap) {
  TrainerMetrics metrics(*registry_, {.job = "tiny", .rank = 0});
  auto trainer = Trainer::Create(Tiny(), nullptr, &metrics);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  const std::string text = Scrape();
  const std::string l = "job=\"tiny\",rank=\"0\"";
  EXPECT_EQ(Value(text, "clmae_trainer_step{" + l + "}"), 4);
  EXPECT_EQ(Value(text, "clmae_trainer_total_steps{" + l + "}"), 4);
  EXPECT_EQ(Value(text, "clmae_trainer_images_total{" + l + "}"), 32);
  EXPECT_EQ(Value(text, "clmae_trainer_step_seconds_count{" + l + "}"), 4);
  EXPECT_GT(Value(text, "clmae_trainer_step_phase_seconds_sum{" + ByPhase(l, "phase_b") + "}"), 0);
  EXPECT_GT(Value(text, "clmae_trainer_grad_norm{job=\"tiny\",network=\"masker\",rank=\"0\"}"), 0);
  // Log steps 2 and 4: the second compares its kept patches with the first's.
  const double overlap = Value(text, "clmae_trainer_mask_overlap_ratio{" + l + "}");
  EXPECT_GE(overlap, 0);
  EXPECT_LE(overlap, 1);
}

TEST_F(TrainerMetricsTest, PlainMaeHasNoMaskOverlap) {
  TrainerMetrics metrics(*registry_, {.job = "plain", .rank = 0});
  TrainerOptions o = Tiny();
  o.plain_mae = true;
  auto trainer = Trainer::Create(o, nullptr, &metrics);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  const std::string text = Scrape();
  EXPECT_EQ(Value(text, "clmae_trainer_step{job=\"plain\",rank=\"0\"}"), 4);
  EXPECT_THAT(text, Not(HasSubstr("clmae_trainer_mask_overlap_ratio{")));
}

TEST_F(TrainerMetricsTest, UploadCountsAreReadAtEveryScrape) {
  UploadCounts counts{.uploaded = 3, .dropped = 1, .deferred = 2, .errors = 5};
  std::shared_ptr<prometheus::Collectable> uploads =
      UploadMetrics({.job = "j", .rank = 0}, [&counts] { return counts; });
  std::string text = ExpositionText({uploads});
  EXPECT_EQ(
      Value(text, R"(clmae_trainer_checkpoint_uploads_total{job="j",rank="0",outcome="uploaded"})"),
      3);
  EXPECT_EQ(
      Value(text, R"(clmae_trainer_checkpoint_uploads_total{job="j",rank="0",outcome="dropped"})"),
      1);
  EXPECT_EQ(Value(text, R"(clmae_trainer_checkpoint_upload_deferrals_total{job="j",rank="0"})"), 2);
  EXPECT_EQ(Value(text, R"(clmae_trainer_checkpoint_upload_errors_total{job="j",rank="0"})"), 5);
  counts.uploaded = 4;
  text = ExpositionText({uploads});
  EXPECT_EQ(
      Value(text, R"(clmae_trainer_checkpoint_uploads_total{job="j",rank="0",outcome="uploaded"})"),
      4);
  const std::optional<PromtoolResult> checked = PromtoolCheckMetrics(text);
  if (checked.has_value()) EXPECT_EQ(checked->exit_code, 0) << checked->output;
}

TEST_F(TrainerMetricsTest, PromtoolAcceptsTheExposition) {
  TrainerMetrics metrics(*registry_, {.job = "tiny", .rank = 0});
  auto trainer = Trainer::Create(Tiny(), nullptr, &metrics);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  const std::optional<PromtoolResult> checked = PromtoolCheckMetrics(Scrape());
  if (!checked.has_value()) GTEST_SKIP() << "promtool is not on PATH";
  EXPECT_EQ(checked->exit_code, 0) << checked->output;
}

}  // namespace
}  // namespace clmae
