// The pieces clmaectl's tables and live lines are made of.

#include "services/clmaectl/job_format.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/clmaectl/text_table.h"

namespace clmae::ctl {
namespace {

TEST(JobFormatTest, StateNames) {
  EXPECT_EQ(JobStateName(v1::JOB_STATE_RESTARTING), "RESTARTING");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(42)), "UNKNOWN(42)");
  EXPECT_EQ(ParseJobStateName("Succeeded"), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(ParseJobStateName("JOB_STATE_CANCELLED"), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ParseJobStateName("unspecified"), std::nullopt);
  EXPECT_EQ(ParseJobStateName("done"), std::nullopt);
  EXPECT_TRUE(IsTerminal(v1::JOB_STATE_CANCELLED));
  EXPECT_FALSE(IsTerminal(v1::JOB_STATE_RESTARTING));
}

TEST(JobFormatTest, Durations) {
  EXPECT_EQ(FormatAge(absl::Seconds(59)), "59s");
  EXPECT_EQ(FormatAge(absl::Seconds(60)), "1m");
  EXPECT_EQ(FormatAge(absl::Hours(47)), "1d");
  EXPECT_EQ(FormatAge(-absl::Seconds(3)), "0s");  // a clock behind the server's
  EXPECT_EQ(ShortDuration(absl::Seconds(59.6)), "1m00s");
  EXPECT_EQ(ShortDuration(absl::Seconds(3725)), "1h02m");
}

TEST(JobFormatTest, ProgressPieces) {
  EXPECT_EQ(ProgressBar(0.5, 10), "[#####-----]");
  EXPECT_EQ(ProgressBar(1.7, 4), "[####]");
  EXPECT_EQ(ProgressBar(-1, 4), "[----]");
  v1::Progress p;
  EXPECT_EQ(FormatSteps(p), "-");
  EXPECT_EQ(FormatEpochs(p), "-");
  EXPECT_EQ(ProgressFraction(p), 0);
  p.set_step(10);
  p.set_total_steps(40);
  p.set_epoch(4);  // after the last epoch: shown as the last
  p.set_total_epochs(4);
  EXPECT_EQ(FormatSteps(p), "10/40");
  EXPECT_EQ(FormatEpochs(p), "4/4");
  EXPECT_EQ(FormatLambda(-1), "-1.000");
  p.set_loss_mae(0.5);
  EXPECT_EQ(FormatLosses(p), "mae 0.5000");  // plain MAE: no masker terms
  p.set_loss_kl(0.25);
  EXPECT_EQ(FormatLosses(p), "mae 0.5000 m.rec 0.0000 gauss 0.0000 kl 0.2500 div 0.0000");
}

TEST(JobFormatTest, MetricsSortedByName) {
  v1::JobResult result;
  EXPECT_EQ(FormatMetrics(result), "");
  (*result.mutable_metrics())["probe_top1"] = 0.5;
  (*result.mutable_metrics())["knn_top1"] = 0.25;
  EXPECT_EQ(FormatMetrics(result), "knn_top1 0.2500, probe_top1 0.5000");
}

TEST(JobFormatTest, QualityOnlyOnceMeasured) {
  v1::Progress progress;
  EXPECT_EQ(FormatQuality(progress), "");
  EXPECT_EQ(FormatQualityShort(progress), "");
  v1::Quality& q = *progress.mutable_quality();
  q.set_step(94);
  q.set_epoch(1);
  q.set_knn_top1(0.682);
  q.set_knn_top1_patch_mean(0.64);
  q.set_train_images(1000);
  q.set_test_images(500);
  EXPECT_EQ(FormatQuality(progress),
            "k-NN top-1 68.2% (class token), 64.0% (patch mean) at step 94, epoch 1.00 "
            "(1000/500 images)");
  EXPECT_EQ(FormatQualityShort(progress), "k-NN 68.2%/64.0%");
}

TEST(TextTableTest, AlignsByColumnsNotBytes) {
  EXPECT_EQ(DisplayWidth("λ_cl"), 4);
  EXPECT_EQ(TruncateToWidth("aλb", 2), "aλ");
  EXPECT_EQ(TruncateToWidth("ab", 5), "ab");
  TextTable table({"λ_cl", "X"});
  table.AddRow({"+0.200", "y"});
  table.AddRow({"-"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "λ_cl    X\n"
            "+0.200  y\n"
            "-\n");
}

}  // namespace
}  // namespace clmae::ctl
