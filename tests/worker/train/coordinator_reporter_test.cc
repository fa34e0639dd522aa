#include "worker/train/coordinator_reporter.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"
#include "tests/worker/agent/fake_worker_control.h"

namespace clmae {
namespace {

using agent_testing::FakeServer;
using agent_testing::FakeWorkerControl;
using agent_testing::WaitUntil;
using ::testing::Contains;
using ::testing::HasSubstr;

StepReport Report(int64_t step) {
  StepReport r;
  r.step = step;
  r.total_steps = 500;
  r.epoch = 2;
  r.epochs = 10;
  r.lambda_cl = -0.25;
  r.lr = 1.5e-4;
  r.stats.loss_mae = 0.61;
  r.stats.masker_rec = 0.42;
  r.stats.masker_gauss = 0.03;
  r.stats.masker_kl = 0.02;
  r.stats.masker_div = 0.01;
  r.stats.masker_total = -0.36;
  r.images_per_second = 812.5;
  r.images_seen = 12800;
  return r;
}

class CoordinatorReporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
  }
  void TearDown() override {
    service_.HoldProgress(false);
    reporter_.reset();
  }

  CoordinatorReporterOptions Options(int rank = 0) {
    CoordinatorReporterOptions options;
    options.client.address = server_->address();
    options.client.token = "worker-token";
    options.job_id = "job-9";
    options.attempt = 2;
    options.rank = rank;
    options.min_interval = absl::Milliseconds(50);
    options.rpc_timeout = absl::Seconds(5);
    options.output_dir = "/runs/job-9";
    return options;
  }

  void Make(const CoordinatorReporterOptions& options) {
    absl::StatusOr<std::unique_ptr<CoordinatorReporter>> made =
        CoordinatorReporter::Create(options);
    ASSERT_TRUE(made.ok()) << made.status();
    reporter_ = *std::move(made);
  }

  // The last report received with progress at `step`, if any.
  std::optional<v1::ReportProgressRequest> ReportAt(int64_t step) {
    std::optional<v1::ReportProgressRequest> found;
    for (const v1::ReportProgressRequest& r : service_.progress()) {
      if (r.progress().step() == step) found = r;
    }
    return found;
  }

  FakeWorkerControl service_;
  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<CoordinatorReporter> reporter_;
};

TEST_F(CoordinatorReporterTest, RankZeroReportsEveryProgressField) {
  Make(Options(0));
  reporter_->OnStart(0, 500);
  reporter_->OnStep(Report(40));
  ASSERT_TRUE(WaitUntil([&] { return ReportAt(40).has_value(); }));
  const v1::ReportProgressRequest r = *ReportAt(40);
  EXPECT_EQ(r.job_id(), "job-9");
  EXPECT_EQ(r.attempt(), 2);
  EXPECT_EQ(r.rank(), 0);
  const v1::Progress& p = r.progress();
  EXPECT_EQ(p.total_steps(), 500);
  EXPECT_EQ(p.epoch(), 2);
  EXPECT_EQ(p.total_epochs(), 10);
  EXPECT_DOUBLE_EQ(p.curriculum_factor(), -0.25);
  EXPECT_DOUBLE_EQ(p.lr(), 1.5e-4);
  EXPECT_DOUBLE_EQ(p.loss_mae(), 0.61);
  EXPECT_DOUBLE_EQ(p.loss_masker_recon(), 0.42);
  EXPECT_DOUBLE_EQ(p.loss_gauss(), 0.03);
  EXPECT_DOUBLE_EQ(p.loss_kl(), 0.02);
  EXPECT_DOUBLE_EQ(p.loss_div(), 0.01);
  EXPECT_DOUBLE_EQ(p.loss_masker_total(), -0.36);
  EXPECT_DOUBLE_EQ(p.images_per_sec(), 812.5);
  EXPECT_EQ(p.images_seen(), 12800);
  EXPECT_GT(p.update_time().seconds(), 0);
  EXPECT_FALSE(r.has_result());
  EXPECT_THAT(service_.tokens(), Contains("Bearer worker-token"));
  EXPECT_EQ(reporter_->rpc_errors(), 0);
}

TEST_F(CoordinatorReporterTest, OtherRanksReportTheirStepOnly) {
  Make(Options(3));
  reporter_->OnStep(Report(70));
  ASSERT_TRUE(WaitUntil([&] { return ReportAt(70).has_value(); }));
  const v1::ReportProgressRequest r = *ReportAt(70);
  EXPECT_EQ(r.rank(), 3);
  EXPECT_EQ(r.progress().total_steps(), 500);
  EXPECT_EQ(r.progress().epoch(), 2);
  EXPECT_EQ(r.progress().loss_mae(), 0);
  EXPECT_EQ(r.progress().lr(), 0);
}

TEST_F(CoordinatorReporterTest, KeepsReportingTheLastProgressWhileTrainingIsSilent) {
  Make(Options(0));
  reporter_->OnStep(Report(5));
  // No further steps: the same progress keeps arriving, freshly stamped.
  ASSERT_TRUE(WaitUntil([&] { return service_.progress().size() >= 3; }));
  const std::vector<v1::ReportProgressRequest> all = service_.progress();
  for (const v1::ReportProgressRequest& r : all) EXPECT_EQ(r.progress().step(), 5);
  auto stamp = [](const v1::ReportProgressRequest& r) {
    return r.progress().update_time().seconds() * 1000000000LL + r.progress().update_time().nanos();
  };
  EXPECT_GT(stamp(all.back()), stamp(all.front()));
}

TEST_F(CoordinatorReporterTest, FinishPhaseIsCarriedByTheKeepAlives) {
  Make(Options(1));
  reporter_->OnStep(Report(500));
  ASSERT_TRUE(WaitUntil([&] { return ReportAt(500).has_value(); }));
  EXPECT_EQ(ReportAt(500)->progress().phase(), "train");
  reporter_->OnPhase("finish");
  // Evaluation runs; no step is logged, yet reports in "finish" keep coming.
  const size_t before = service_.progress().size();
  ASSERT_TRUE(WaitUntil([&] {
    const std::vector<v1::ReportProgressRequest> all = service_.progress();
    int finishing = 0;
    for (size_t i = before; i < all.size(); ++i) {
      finishing += all[i].progress().phase() == "finish" && all[i].progress().step() == 500;
    }
    return finishing >= 2;
  }));
}

TEST_F(CoordinatorReporterTest, LatestProgressWinsWhileTheCoordinatorIsSlow) {
  Make(Options(0));
  service_.HoldProgress(true);
  reporter_->OnStep(Report(1));
  ASSERT_TRUE(WaitUntil([&] { return service_.progress_calls() == 1; }));
  // The coordinator holds the first report; training goes on regardless.
  for (int64_t step = 2; step <= 300; ++step) reporter_->OnStep(Report(step));
  EXPECT_EQ(service_.progress_calls(), 1);
  service_.HoldProgress(false);
  ASSERT_TRUE(WaitUntil([&] { return ReportAt(300).has_value(); }));
  // Intermediate steps were replaced in the single slot, not queued.
  for (int64_t step = 2; step < 300; ++step) EXPECT_FALSE(ReportAt(step).has_value()) << step;
}

TEST_F(CoordinatorReporterTest, EvaluationSendsTheResultOnce) {
  Make(Options(0));
  reporter_->OnStep(Report(500));
  EvalResult eval;
  eval.knn_top1 = 0.71;
  eval.probe_top1 = std::numeric_limits<double>::quiet_NaN();
  reporter_->OnEvaluation(eval);
  // Synchronous: the result is there when OnEvaluation returns.
  std::optional<v1::ReportProgressRequest> with_result;
  for (const v1::ReportProgressRequest& r : service_.progress()) {
    if (r.has_result()) with_result = r;
  }
  ASSERT_TRUE(with_result.has_value());
  EXPECT_DOUBLE_EQ(with_result->result().metrics().at("knn_top1"), 0.71);
  EXPECT_FALSE(with_result->result().metrics().contains("probe_top1"));
  EXPECT_FALSE(with_result->result().metrics().contains("raw_pixels_knn_top1"));
  EXPECT_EQ(with_result->result().output_dir(), "/runs/job-9");
  EXPECT_EQ(with_result->progress().step(), 500);

  ASSERT_TRUE(reporter_->Flush().ok());
  int results = 0;
  for (const v1::ReportProgressRequest& r : service_.progress()) results += r.has_result();
  EXPECT_EQ(results, 1) << "Flush does not send a delivered result again";
}

TEST_F(CoordinatorReporterTest, ResultCarriesBothFeatureKindsAndTheBaselines) {
  EvalResult eval;
  eval.knn_top1 = 0.7;
  eval.knn_top1_patch_mean = 0.6;
  eval.probe_top1 = 0.8;
  eval.raw_pixels_knn_top1 = 0.82;
  eval.random_init_knn_top1 = 0.5;
  eval.random_init_knn_top1_patch_mean = 0.55;
  const v1::JobResult result = ResultFromEvaluation(eval, "/out");
  const std::map<std::string, double> metrics(result.metrics().begin(), result.metrics().end());
  EXPECT_EQ(metrics, (std::map<std::string, double>{{"knn_top1", 0.7},
                                                    {"knn_top1_patch_mean", 0.6},
                                                    {"probe_top1", 0.8},
                                                    {"raw_pixels_knn_top1", 0.82},
                                                    {"random_init_knn_top1", 0.5},
                                                    {"random_init_knn_top1_patch_mean", 0.55}}));
}

TEST_F(CoordinatorReporterTest, ProgressCarriesTheLatestEvaluationDuringTraining) {
  Make(Options(0));
  reporter_->OnStep(Report(100));
  QualityReport q;
  q.step = 100;
  q.epoch = 2;
  q.lambda_cl = 0.25;
  q.knn_top1 = 0.6;
  q.knn_top1_patch_mean = 0.65;
  q.train_images = 1000;
  q.test_images = 500;
  reporter_->OnQuality(q);
  reporter_->OnStep(Report(110));  // later reports keep it
  ASSERT_TRUE(reporter_->Flush().ok());
  const v1::ReportProgressRequest last = service_.progress().back();
  EXPECT_EQ(last.progress().step(), 110);
  ASSERT_TRUE(last.progress().has_quality());
  EXPECT_EQ(last.progress().quality().step(), 100);
  EXPECT_DOUBLE_EQ(last.progress().quality().epoch(), 2);
  EXPECT_DOUBLE_EQ(last.progress().quality().knn_top1(), 0.6);
  EXPECT_DOUBLE_EQ(last.progress().quality().knn_top1_patch_mean(), 0.65);
  EXPECT_DOUBLE_EQ(last.progress().quality().curriculum_factor(), 0.25);
  EXPECT_EQ(last.progress().quality().train_images(), 1000);
}

TEST_F(CoordinatorReporterTest, FlushDeliversAResultTheCoordinatorMissed) {
  CoordinatorReporterOptions options = Options(0);
  options.result_attempts = 2;
  Make(options);
  reporter_->OnStep(Report(500));
  service_.set_progress_answer(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  EvalResult eval;
  eval.knn_top1 = 0.5;
  eval.probe_top1 = 0.625;
  reporter_->OnEvaluation(eval);
  EXPECT_GE(reporter_->rpc_errors(), 2);
  service_.set_progress_answer(grpc::Status::OK);
  ASSERT_TRUE(reporter_->Flush().ok());
  std::optional<v1::ReportProgressRequest> last = service_.progress().back();
  ASSERT_TRUE(last->has_result());
  EXPECT_DOUBLE_EQ(last->result().metrics().at("probe_top1"), 0.625);
}

TEST_F(CoordinatorReporterTest, UnreachableCoordinatorNeitherBlocksNorFailsTraining) {
  const std::string address = server_->address();
  server_->Stop();  // nothing listens there any more
  CoordinatorReporterOptions options = Options(0);
  options.client.address = address;
  options.result_attempts = 2;
  options.rpc_timeout = absl::Milliseconds(300);
  Make(options);
  reporter_->OnStart(0, 500);
  for (int64_t step = 1; step <= 1000; ++step) reporter_->OnStep(Report(step));
  ASSERT_TRUE(WaitUntil([&] { return reporter_->rpc_errors() >= 1; }));
  const absl::Status flushed = reporter_->Flush();
  EXPECT_FALSE(flushed.ok());
  EXPECT_TRUE(flushed.code() == absl::StatusCode::kUnavailable ||
              flushed.code() == absl::StatusCode::kDeadlineExceeded)
      << flushed;
  EXPECT_FALSE(reporter_->attempt_superseded());
}

TEST_F(CoordinatorReporterTest, AStaleAttemptIsFlaggedForTheTrainer) {
  Make(Options(1));
  service_.set_progress_answer(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "attempt 2 is no longer running"));
  reporter_->OnStep(Report(8));
  EXPECT_TRUE(WaitUntil([&] { return reporter_->attempt_superseded(); }));
  const absl::Status flushed = reporter_->Flush();
  EXPECT_EQ(flushed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(flushed.message(), HasSubstr("no longer running"));
}

TEST(CoordinatorReporterCreateTest, RejectsIncompleteOptions) {
  CoordinatorReporterOptions options;
  options.client.address = "127.0.0.1:1";
  EXPECT_EQ(CoordinatorReporter::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.job_id = "j";
  options.attempt = 0;
  EXPECT_THAT(CoordinatorReporter::Create(options).status().message(), HasSubstr("attempt"));
  options.attempt = 1;
  options.min_interval = absl::ZeroDuration();
  EXPECT_THAT(CoordinatorReporter::Create(options).status().message(), HasSubstr("min_interval"));
}

}  // namespace
}  // namespace clmae
