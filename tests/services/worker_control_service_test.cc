// The WorkerControl service over a real Attach stream: a fake agent
// registers, receives its assignments, reports RUNNING and EXITED 0 for both
// ranks, and the job ends SUCCEEDED.

#include "services/worker_control_service.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

class WorkerControlServiceTest : public ServerFixture {
 protected:
  static v1::AgentMessage Status(const v1::TaskAssignment& task, v1::TaskStatus::State state) {
    v1::AgentMessage message;
    v1::TaskStatus* status = message.mutable_task_status();
    status->set_job_id(task.job_id());
    status->set_attempt(task.attempt());
    status->set_rank(task.rank());
    status->set_state(state);
    status->set_exit_code(0);
    return message;
  }
};

TEST_F(WorkerControlServiceTest, AgentRunsAJobToSuccessOverTheStream) {
  auto agent_context = Context(kWorkerToken);
  auto agent = worker_stub_->Attach(agent_context.get());
  v1::AgentMessage hello;
  hello.mutable_register_()->set_worker_id("node-a");
  hello.mutable_register_()->set_address("node-a.test");
  hello.mutable_register_()->set_cpu_slots(2);
  ASSERT_TRUE(agent->Write(hello));
  v1::CoordinatorMessage reply;
  ASSERT_TRUE(agent->Read(&reply));
  ASSERT_TRUE(reply.has_registered());
  EXPECT_EQ(reply.registered().lease().seconds(), 30);
  EXPECT_EQ(reply.registered().heartbeat_interval().seconds(), 5);

  const v1::Job job = Submit(CpuSpec(2));
  std::vector<v1::TaskAssignment> tasks;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(agent->Read(&reply));
    ASSERT_TRUE(reply.has_assign()) << reply.DebugString();
    tasks.push_back(reply.assign().task());
  }
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(tasks[r].job_id(), job.id());
    EXPECT_EQ(tasks[r].rank(), r);
    EXPECT_EQ(tasks[r].world_size(), 2);
    EXPECT_EQ(tasks[r].device_kind(), "cpu");
    EXPECT_EQ(tasks[r].master_addr(), "node-a.test");
    EXPECT_EQ(tasks[r].spec().name(), job.spec().name());
  }

  // Watch the job to its end so the test knows when the exits were handled.
  auto watch_context = Context(kClientToken);
  v1::WatchJobRequest watch_request;
  watch_request.set_job_id(job.id());
  auto watch = coordinator_stub_->WatchJob(watch_context.get(), watch_request);
  v1::JobUpdate update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.snapshot().state(), v1::JOB_STATE_SCHEDULED);

  for (const auto& task : tasks) ASSERT_TRUE(agent->Write(Status(task, v1::TaskStatus::RUNNING)));
  v1::AgentMessage heartbeat;
  heartbeat.mutable_heartbeat();
  ASSERT_TRUE(agent->Write(heartbeat));
  std::vector<v1::JobState> states;
  while (states.empty() || states.back() != v1::JOB_STATE_RUNNING) {
    ASSERT_TRUE(watch->Read(&update));
    if (update.has_event()) states.push_back(update.event().to_state());
  }

  // Rank 0's trainer reports progress and its result before exiting.
  v1::ReportProgressRequest progress;
  progress.set_job_id(job.id());
  progress.set_attempt(tasks[0].attempt());
  progress.set_rank(0);
  progress.mutable_progress()->set_step(12);
  (*progress.mutable_result()->mutable_metrics())["knn_top1"] = 0.5;
  auto trainer_context = Context(kWorkerToken);
  v1::ReportProgressResponse progress_response;
  grpc::Status reported =
      worker_stub_->ReportProgress(trainer_context.get(), progress, &progress_response);
  ASSERT_TRUE(reported.ok()) << reported.error_message();

  for (const auto& task : tasks) ASSERT_TRUE(agent->Write(Status(task, v1::TaskStatus::EXITED)));
  while (watch->Read(&update)) {
    if (update.has_event()) states.push_back(update.event().to_state());
  }
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_EQ(states.back(), v1::JOB_STATE_SUCCEEDED);

  const v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(done.result().metrics().at("knn_top1"), 0.5);

  auto list_context = Context(kClientToken);
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(
      coordinator_stub_->ListWorkers(list_context.get(), v1::ListWorkersRequest(), &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).free_cpu_slots(), 2);

  agent->WritesDone();
  EXPECT_TRUE(agent->Finish().ok());
}

TEST_F(WorkerControlServiceTest, FirstMessageMustBeRegister) {
  auto context = Context(kWorkerToken);
  auto agent = worker_stub_->Attach(context.get());
  v1::AgentMessage heartbeat;
  heartbeat.mutable_heartbeat();
  agent->Write(heartbeat);
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(agent->Read(&reply));
  const grpc::Status status = agent->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("register"));
}

TEST_F(WorkerControlServiceTest, BadRegistrationEndsTheStreamNamingTheField) {
  auto context = Context(kWorkerToken);
  auto agent = worker_stub_->Attach(context.get());
  v1::AgentMessage hello;
  hello.mutable_register_()->set_cpu_slots(1);  // no worker_id
  agent->Write(hello);
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(agent->Read(&reply));
  const grpc::Status status = agent->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("worker_id"));
}

TEST_F(WorkerControlServiceTest, ProgressForAFinishedAttemptTellsTheTrainerToStop) {
  const v1::Job job = Submit(CpuSpec(1));
  auto cancel_context = Context(kClientToken);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  v1::Job cancelled;
  ASSERT_TRUE(coordinator_stub_->CancelJob(cancel_context.get(), cancel, &cancelled).ok());

  v1::ReportProgressRequest progress;
  progress.set_job_id(job.id());
  progress.set_attempt(1);
  progress.mutable_progress()->set_step(3);
  auto context = Context(kWorkerToken);
  v1::ReportProgressResponse response;
  EXPECT_EQ(worker_stub_->ReportProgress(context.get(), progress, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace clmae
