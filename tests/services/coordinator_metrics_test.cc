#include "services/coordinator_metrics.h"

#include <string>

#include "common/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/services/promtool_check.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CoordinatorMetricsTest : public CoordinatorFixture {
 protected:
  void SetUp() override {
    CoordinatorFixture::SetUp();
    CoordinatorMetricsOptions options;
    options.clock = [this] { return now_; };
    options.checkpoint_times = [this] { return checkpoints_; };
    auto created = CoordinatorMetrics::Create(coordinator_.get(), *registry_, options);
    ASSERT_TRUE(created.ok()) << created.status();
    metrics_ = *std::move(created);
  }
  void TearDown() override {
    metrics_.reset();  // stops watching before the coordinator goes
    CoordinatorFixture::TearDown();
  }
  std::string Scrape() { return ExpositionText({registry_, metrics_}); }

  // Rank 0's progress with every field the metrics read.
  void FullProgress(const std::string& id, int64_t step) {
    v1::ReportProgressRequest request;
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_rank(0);
    v1::Progress& p = *request.mutable_progress();
    p.set_step(step);
    p.set_total_steps(200);
    p.set_curriculum_factor(-0.25);
    p.set_loss_mae(0.5);
    p.set_loss_masker_recon(0.125);
    p.set_loss_gauss(2);
    p.set_loss_kl(3);
    p.set_loss_div(4);
    p.set_loss_masker_total(-1.5);
    p.set_lr(0.001);
    p.set_images_per_sec(640);  // 64 images per step -> 10 steps/s
    p.set_images_seen(step * 64);
    p.mutable_quality()->set_knn_top1(0.625);
    p.mutable_quality()->set_knn_top1_patch_mean(0.75);
    ASSERT_TRUE(coordinator_->ReportProgress(request).ok());
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::shared_ptr<CoordinatorMetrics> metrics_;
  absl::flat_hash_map<std::string, absl::Time> checkpoints_;
};

TEST_F(CoordinatorMetricsTest, EveryFamilyIsDeclaredBeforeAnyJob) {
  const std::string text = Scrape();
  for (const char* line :
       {"clmae_coordinator_jobs{state=\"pending\"} 0",
        "clmae_coordinator_jobs{state=\"cancelled\"} 0",
        "clmae_coordinator_queue_depth{device_kind=\"cuda\"} 0",
        "clmae_coordinator_queue_depth{device_kind=\"cpu\"} 0",
        "clmae_coordinator_workers{state=\"connected\"} 0",
        "clmae_coordinator_workers{state=\"lost\"} 0",
        "clmae_coordinator_devices{kind=\"cuda\",state=\"free\"} 0",
        "clmae_coordinator_submissions_total 0", "clmae_coordinator_restarts_total 0",
        "clmae_coordinator_failures_total 0",
        "clmae_coordinator_scheduling_latency_seconds_count 0"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  EXPECT_THAT(text, Not(HasSubstr("clmae_job_")));
}

TEST_F(CoordinatorMetricsTest, JobsWorkersAndProgressAreScraped) {
  auto a = Attach("a", 2);
  now_ += absl::Seconds(1);
  const std::string id = Submit(CpuSpec("tiny", 2));          // placed at once
  const std::string waiting = Submit(CpuSpec("waiting", 3));  // never fits on 2 slots
  now_ += absl::Seconds(4);
  Started("a", a->Assigns());
  FullProgress(id, 50);
  checkpoints_[id] = now_ - absl::Seconds(30);

  const std::string text = Scrape();
  const std::string job = "job=\"" + id + "\",name=\"tiny\"";
  for (const std::string& line : {
           std::string("clmae_coordinator_jobs{state=\"pending\"} 1"),
           std::string("clmae_coordinator_jobs{state=\"running\"} 1"),
           std::string("clmae_coordinator_queue_depth{device_kind=\"cpu\"} 1"),
           std::string("clmae_coordinator_workers{state=\"connected\"} 1"),
           std::string("clmae_coordinator_devices{kind=\"cpu\",state=\"busy\"} 2"),
           std::string("clmae_coordinator_devices{kind=\"cpu\",state=\"free\"} 0"),
           std::string("clmae_coordinator_submissions_total 2"),
           std::string("clmae_coordinator_scheduling_latency_seconds_count 1"),
           "clmae_job_state{" + job + ",state=\"running\"} 1",
           "clmae_job_state{" + job + ",state=\"pending\"} 0",
           "clmae_job_state{job=\"" + waiting + "\",name=\"waiting\",state=\"pending\"} 1",
           "clmae_job_curriculum_factor{" + job + "} -0.25",
           "clmae_job_loss{" + job + ",term=\"mae\"} 0.5",
           "clmae_job_loss{" + job + ",term=\"masker_recon\"} 0.125",
           "clmae_job_loss{" + job + ",term=\"gauss\"} 2",
           "clmae_job_loss{" + job + ",term=\"kl\"} 3",
           "clmae_job_loss{" + job + ",term=\"div\"} 4",
           "clmae_job_loss{" + job + ",term=\"masker_total\"} -1.5",
           "clmae_job_learning_rate{" + job + "} 0.001",
           "clmae_job_steps_per_second{" + job + "} 10",
           "clmae_job_images_per_second{" + job + "} 640",
           "clmae_job_progress_ratio{" + job + "} 0.25",
           "clmae_job_step{" + job + "} 50",
           "clmae_job_restarts{" + job + "} 0",
           "clmae_job_knn_top1{" + job + ",feature=\"class_token\"} 0.625",
           "clmae_job_knn_top1{" + job + ",feature=\"patch_mean\"} 0.75",
           "clmae_job_checkpoint_age_seconds{" + job + "} 30",
       }) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  // No progress yet: only the state and restarts of the waiting job.
  EXPECT_THAT(text, Not(HasSubstr("clmae_job_step{job=\"" + waiting)));
  EXPECT_THAT(text, Not(HasSubstr("clmae_job_checkpoint_age_seconds{job=\"" + waiting)));
}

TEST_F(CoordinatorMetricsTest, SchedulingLatencyRunsFromSubmissionToPlacement) {
  const std::string id = Submit(CpuSpec("late", 1));
  now_ += absl::Seconds(7);
  auto a = Attach("a", 1);  // places the job 7 s after its submission
  ASSERT_EQ(State(id), v1::JOB_STATE_SCHEDULED);
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_scheduling_latency_seconds_sum 7"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_scheduling_latency_seconds_bucket{le=\"5\"} 0"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_scheduling_latency_seconds_bucket{le=\"10\"} 1"));
}

TEST_F(CoordinatorMetricsTest, FailuresRestartsAndEndedJobsForAnHour) {
  auto a = Attach("a", 1);
  const std::string id = Submit(CpuSpec("flaky", 1, /*max_restarts=*/1));
  Started("a", a->Assigns());
  ASSERT_TRUE(Report("a", a->Assigns()[0], v1::TaskStatus::EXITED, 1).ok());  // restart 1 of 1
  ASSERT_EQ(State(id), v1::JOB_STATE_SCHEDULED);                              // attempt 2 placed
  ASSERT_EQ(a->Assigns().size(), 2u);
  Started("a", {a->Assigns()[1]});
  ASSERT_TRUE(Report("a", a->Assigns()[1], v1::TaskStatus::EXITED, 1).ok());  // no restarts left
  ASSERT_EQ(State(id), v1::JOB_STATE_FAILED);

  std::string text = Scrape();
  const std::string job = "job=\"" + id + "\",name=\"flaky\"";
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_failures_total 2"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_restarts_total 1"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_jobs_finished_total{state=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_jobs{state=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("clmae_job_state{" + job + ",state=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("clmae_job_restarts{" + job + "} 1"));

  now_ += absl::Minutes(59);
  EXPECT_THAT(Scrape(), HasSubstr("clmae_job_state{" + job + ",state=\"failed\"} 1"));
  now_ += absl::Minutes(2);
  text = Scrape();
  EXPECT_THAT(text, Not(HasSubstr("job=\"" + id)));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_jobs{state=\"failed\"} 0"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_jobs_finished_total{state=\"failed\"} 1"));
}

TEST_F(CoordinatorMetricsTest, RpcDurationsByMethodAndCode) {
  metrics_->ObserveRpc("SubmitJob", grpc::StatusCode::OK, 0.003);
  metrics_->ObserveRpc("SubmitJob", grpc::StatusCode::INVALID_ARGUMENT, 0.0002);
  metrics_->ObserveRpc("GetJob", grpc::StatusCode::NOT_FOUND, 0.02);
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_rpc_duration_seconds_count{code=\"OK\","
                              "method=\"SubmitJob\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("clmae_coordinator_rpc_duration_seconds_bucket{code=\"INVALID_ARGUMENT\","
                        "method=\"SubmitJob\",le=\"0.0005\"} 1"));
  EXPECT_THAT(text, HasSubstr("clmae_coordinator_rpc_duration_seconds_count{code=\"NOT_FOUND\","
                              "method=\"GetJob\"} 1"));
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
}

TEST_F(CoordinatorMetricsTest, PromtoolAcceptsTheExposition) {
  auto a = Attach("a", 2);
  const std::string id = Submit(CpuSpec("tiny", 2));
  Started("a", a->Assigns());
  FullProgress(id, 10);
  checkpoints_[id] = now_;
  metrics_->ObserveRpc("SubmitJob", grpc::StatusCode::OK, 0.003);
  const std::optional<PromtoolResult> checked = PromtoolCheckMetrics(Scrape());
  if (!checked.has_value()) GTEST_SKIP() << "promtool is not on PATH";
  EXPECT_EQ(checked->exit_code, 0) << checked->output;
}

}  // namespace
}  // namespace clmae
