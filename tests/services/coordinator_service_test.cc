// The Coordinator service over a real stream: submit, get, list, cancel and
// watch, and bad specs answered with INVALID_ARGUMENT naming the field.

#include "services/coordinator_service.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

class CoordinatorServiceTest : public ServerFixture {
 protected:
  grpc::Status TrySubmit(const v1::SubmitJobRequest& request) {
    auto context = Context(kClientToken);
    v1::Job job;
    return coordinator_stub_->SubmitJob(context.get(), request, &job);
  }
  v1::ListJobsResponse List(const v1::ListJobsRequest& request) {
    auto context = Context(kClientToken);
    v1::ListJobsResponse response;
    grpc::Status status = coordinator_stub_->ListJobs(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  grpc::Status Cancel(const std::string& job_id, v1::Job* job) {
    auto context = Context(kClientToken);
    v1::CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason("test says stop");
    return coordinator_stub_->CancelJob(context.get(), request, job);
  }
};

TEST_F(CoordinatorServiceTest, BadSpecIsInvalidArgumentNamingTheField) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = CpuSpec(1);
  request.mutable_spec()->mutable_masking()->set_mask_ratio(1.5);
  grpc::Status status = TrySubmit(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("masking.mask_ratio"));

  request.mutable_spec()->mutable_masking()->clear_mask_ratio();
  request.mutable_spec()->mutable_resources()->set_world_size(0);
  status = TrySubmit(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("resources.world_size"));

  status = TrySubmit(v1::SubmitJobRequest());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec"));

  EXPECT_EQ(List(v1::ListJobsRequest()).jobs_size(), 0);  // nothing stored
}

TEST_F(CoordinatorServiceTest, SubmitGetListCancelRoundTrip) {
  v1::JobSpec spec = CpuSpec(1);
  (*spec.mutable_labels())["team"] = "vision";
  const v1::Job first = Submit(spec, "request-1");
  ASSERT_FALSE(first.id().empty());
  EXPECT_EQ(first.state(), v1::JOB_STATE_PENDING);        // no worker attached
  EXPECT_EQ(Submit(spec, "request-1").id(), first.id());  // a retry, not a new job
  const v1::Job second = Submit(CpuSpec(1));
  ASSERT_NE(second.id(), first.id());

  const v1::Job got = Get(first.id());
  EXPECT_EQ(got.spec().labels().at("team"), "vision");
  EXPECT_EQ(got.state(), v1::JOB_STATE_PENDING);

  v1::ListJobsRequest by_label;
  (*by_label.mutable_label_selector())["team"] = "vision";
  v1::ListJobsResponse listed = List(by_label);
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), first.id());

  v1::ListJobsRequest paged;
  paged.set_page_size(1);
  listed = List(paged);
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), second.id());  // newest first
  ASSERT_FALSE(listed.next_page_token().empty());
  paged.set_page_token(listed.next_page_token());
  listed = List(paged);
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), first.id());

  v1::Job cancelled;
  ASSERT_TRUE(Cancel(first.id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(Get(first.id()).state(), v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(Cancel(first.id(), &cancelled).ok());  // terminal: unchanged
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);

  v1::ListJobsRequest by_state;
  by_state.add_states(v1::JOB_STATE_PENDING);
  listed = List(by_state);
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), second.id());

  v1::ListJobsRequest too_big;
  too_big.set_page_size(5000);
  auto context = Context(kClientToken);
  v1::ListJobsResponse response;
  grpc::Status status = coordinator_stub_->ListJobs(context.get(), too_big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));

  v1::Job none;
  EXPECT_EQ(Cancel("", &none).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CoordinatorServiceTest, WatchingOneJobEndsAfterItsTerminalState) {
  const v1::Job job = Submit(CpuSpec(1));
  auto context = Context(kClientToken);
  v1::WatchJobRequest request;
  request.set_job_id(job.id());
  auto reader = coordinator_stub_->WatchJob(context.get(), request);
  v1::JobUpdate update;
  ASSERT_TRUE(reader->Read(&update));
  ASSERT_TRUE(update.has_snapshot());
  EXPECT_EQ(update.snapshot().id(), job.id());
  EXPECT_EQ(update.snapshot().state(), v1::JOB_STATE_PENDING);

  v1::Job cancelled;
  ASSERT_TRUE(Cancel(job.id(), &cancelled).ok());
  std::vector<v1::JobUpdate> rest;
  while (reader->Read(&update)) rest.push_back(update);
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(rest.empty());
  ASSERT_TRUE(rest.back().has_event());
  EXPECT_EQ(rest.back().event().to_state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(rest.back().event().message(), HasSubstr("test says stop"));

  // A terminal job: its snapshot, then the end.
  auto again = Context(kClientToken);
  auto terminal = coordinator_stub_->WatchJob(again.get(), request);
  ASSERT_TRUE(terminal->Read(&update));
  EXPECT_EQ(update.snapshot().state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(terminal->Read(&update));
  EXPECT_TRUE(terminal->Finish().ok());
}

TEST_F(CoordinatorServiceTest, WatchingEveryJobSeesSubmissionsUntilTheClientCancels) {
  auto context = Context(kClientToken);
  auto reader = coordinator_stub_->WatchJob(context.get(), v1::WatchJobRequest());
  const v1::Job job = Submit(CpuSpec(1));
  v1::JobUpdate update;
  ASSERT_TRUE(reader->Read(&update));
  EXPECT_EQ(update.job_id(), job.id());
  ASSERT_TRUE(update.has_event());
  EXPECT_EQ(update.event().to_state(), v1::JOB_STATE_PENDING);

  context->TryCancel();
  while (reader->Read(&update)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server goes on serving. (A watch stream the server failed to finish
  // would keep TearDown's Shutdown waiting for ever.)
  const v1::Job next = Submit(CpuSpec(1));
  EXPECT_EQ(Get(next.id()).state(), v1::JOB_STATE_PENDING);
}

}  // namespace
}  // namespace clmae
