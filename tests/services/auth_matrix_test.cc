// Every RPC of both services × no token, an unknown token, the client token
// and the worker token: each role reaches only its own service.

#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

struct Rpc {
  std::string name;
  Role role;                      // the role that may call it
  grpc::StatusCode allowed_code;  // what an authorized call of it answers here
  std::function<grpc::Status(grpc::ClientContext*)> call;
};

class AuthMatrixTest : public ServerFixture {
 protected:
  std::vector<Rpc> Rpcs() {
    std::vector<Rpc> rpcs;
    rpcs.push_back({"SubmitJob", Role::kClient, grpc::StatusCode::OK, [this](auto* context) {
                      v1::SubmitJobRequest request;
                      *request.mutable_spec() = CpuSpec(1);
                      v1::Job job;
                      return coordinator_stub_->SubmitJob(context, request, &job);
                    }});
    rpcs.push_back({"GetJob", Role::kClient, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
                      v1::GetJobRequest request;
                      request.set_job_id("no-such-job");
                      v1::Job job;
                      return coordinator_stub_->GetJob(context, request, &job);
                    }});
    rpcs.push_back({"ListJobs", Role::kClient, grpc::StatusCode::OK, [this](auto* context) {
                      v1::ListJobsResponse response;
                      return coordinator_stub_->ListJobs(context, v1::ListJobsRequest(), &response);
                    }});
    rpcs.push_back({"CancelJob", Role::kClient, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
                      v1::CancelJobRequest request;
                      request.set_job_id("no-such-job");
                      v1::Job job;
                      return coordinator_stub_->CancelJob(context, request, &job);
                    }});
    rpcs.push_back({"WatchJob", Role::kClient, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
                      v1::WatchJobRequest request;
                      request.set_job_id("no-such-job");
                      auto reader = coordinator_stub_->WatchJob(context, request);
                      v1::JobUpdate update;
                      while (reader->Read(&update)) {
                      }
                      return reader->Finish();
                    }});
    rpcs.push_back({"ListWorkers", Role::kClient, grpc::StatusCode::OK, [this](auto* context) {
                      v1::ListWorkersResponse response;
                      return coordinator_stub_->ListWorkers(context, v1::ListWorkersRequest(),
                                                            &response);
                    }});
    rpcs.push_back({"Attach", Role::kWorker, grpc::StatusCode::OK, [this](auto* context) {
                      auto stream = worker_stub_->Attach(context);
                      v1::AgentMessage message;
                      message.mutable_register_()->set_worker_id("matrix-agent");
                      message.mutable_register_()->set_address("matrix-agent.test");
                      message.mutable_register_()->set_cpu_slots(1);
                      stream->Write(message);
                      v1::CoordinatorMessage reply;
                      const bool registered = stream->Read(&reply) && reply.has_registered();
                      stream->WritesDone();
                      while (stream->Read(&reply)) {  // e.g. an Assign for the job submitted above
                      }
                      grpc::Status status = stream->Finish();
                      if (status.ok() && !registered) {
                        return grpc::Status(grpc::StatusCode::UNKNOWN, "no `registered` reply");
                      }
                      return status;
                    }});
    rpcs.push_back(
        {"ReportProgress", Role::kWorker, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
           v1::ReportProgressRequest request;
           request.set_job_id("no-such-job");
           request.set_attempt(1);
           v1::ReportProgressResponse response;
           return worker_stub_->ReportProgress(context, request, &response);
         }});
    return rpcs;
  }
};

TEST_F(AuthMatrixTest, EachRpcAnswersOnlyItsRole) {
  struct Caller {
    std::string name;
    std::string token;
  };
  const std::vector<Caller> callers = {{"no token", ""},
                                       {"wrong token", "not-a-token"},
                                       {"client", kClientToken},
                                       {"worker", kWorkerToken}};
  for (const Rpc& rpc : Rpcs()) {
    for (const Caller& caller : callers) {
      SCOPED_TRACE(rpc.name + " with " + caller.name);
      auto context = Context(caller.token);
      const grpc::Status status = rpc.call(context.get());
      const bool own_role =
          caller.token == (rpc.role == Role::kClient ? kClientToken : kWorkerToken);
      const bool other_role =
          caller.token == (rpc.role == Role::kClient ? kWorkerToken : kClientToken);
      if (own_role) {
        EXPECT_EQ(status.error_code(), rpc.allowed_code) << status.error_message();
      } else if (other_role) {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << status.error_message();
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
      }
    }
  }
}

TEST_F(AuthMatrixTest, RefusedCallsChangeNothing) {
  for (const std::string& token : {std::string(), std::string("nope"), std::string(kWorkerToken)}) {
    auto context = Context(token);
    v1::SubmitJobRequest request;
    *request.mutable_spec() = CpuSpec(1);
    v1::Job job;
    EXPECT_FALSE(coordinator_stub_->SubmitJob(context.get(), request, &job).ok());
  }
  auto context = Context(kClientToken);
  v1::ListJobsResponse response;
  ASSERT_TRUE(coordinator_stub_->ListJobs(context.get(), v1::ListJobsRequest(), &response).ok());
  EXPECT_EQ(response.jobs_size(), 0);
}

}  // namespace
}  // namespace clmae
