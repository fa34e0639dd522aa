// Every RPC of both services × every kind of caller: no token, an unknown
// token, an operator, the user who owns the job, another user, a worker.
// Users reach their own jobs, operators every job and the workers' RPCs,
// workers only their service.

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

// Who may call an RPC.
enum class Who {
  kAnyClient,  // any user or operator (not about one job)
  kJobOwner,   // the job's owner or an operator
  kOperator,   // operators
  kWorker,     // workers
};

struct Rpc {
  std::string name;
  Who who;
  grpc::StatusCode allowed_code;  // what an allowed call answers here
  std::function<grpc::Status(grpc::ClientContext*)> call;
};

struct Caller {
  std::string name;
  std::string token;
};

class AuthMatrixTest : public ServerFixture {
 protected:
  // Alice's job, already cancelled (so a watch of it ends at once).
  void SetUp() override {
    ServerFixture::SetUp();
    alice_job_ = Submit(CpuSpec(1), "", kAliceToken).id();
    ASSERT_FALSE(alice_job_.empty());
    auto context = Context(kAliceToken);
    v1::CancelJobRequest cancel;
    cancel.set_job_id(alice_job_);
    v1::Job job;
    ASSERT_TRUE(coordinator_stub_->CancelJob(context.get(), cancel, &job).ok());
  }

  std::vector<Rpc> Rpcs() {
    std::vector<Rpc> rpcs;
    const std::string job = alice_job_;
    rpcs.push_back({"SubmitJob", Who::kAnyClient, grpc::StatusCode::OK, [this](auto* context) {
                      v1::SubmitJobRequest request;
                      *request.mutable_spec() = CpuSpec(1);
                      v1::Job out;
                      return coordinator_stub_->SubmitJob(context, request, &out);
                    }});
    rpcs.push_back({"ListJobs", Who::kAnyClient, grpc::StatusCode::OK, [this](auto* context) {
                      v1::ListJobsResponse response;
                      return coordinator_stub_->ListJobs(context, v1::ListJobsRequest(), &response);
                    }});
    rpcs.push_back(
        {"ListJobs all_owners", Who::kOperator, grpc::StatusCode::OK, [this](auto* context) {
           v1::ListJobsRequest request;
           request.set_all_owners(true);
           v1::ListJobsResponse response;
           return coordinator_stub_->ListJobs(context, request, &response);
         }});
    rpcs.push_back({"GetJob", Who::kJobOwner, grpc::StatusCode::OK, [this, job](auto* context) {
                      v1::GetJobRequest request;
                      request.set_job_id(job);
                      v1::Job out;
                      return coordinator_stub_->GetJob(context, request, &out);
                    }});
    rpcs.push_back({"CancelJob", Who::kJobOwner, grpc::StatusCode::OK, [this, job](auto* context) {
                      v1::CancelJobRequest request;
                      request.set_job_id(job);
                      v1::Job out;
                      return coordinator_stub_->CancelJob(context, request, &out);
                    }});
    rpcs.push_back({"WatchJob", Who::kJobOwner, grpc::StatusCode::OK, [this, job](auto* context) {
                      v1::WatchJobRequest request;
                      request.set_job_id(job);
                      auto reader = coordinator_stub_->WatchJob(context, request);
                      v1::JobUpdate update;
                      while (reader->Read(&update)) {
                      }
                      return reader->Finish();
                    }});
    rpcs.push_back(
        {"ListCheckpoints", Who::kJobOwner, grpc::StatusCode::OK, [this, job](auto* context) {
           v1::ListCheckpointsRequest request;
           request.set_job_id(job);
           v1::ListCheckpointsResponse response;
           return coordinator_stub_->ListCheckpoints(context, request, &response);
         }});
    rpcs.push_back({"DownloadCheckpoint", Who::kJobOwner, grpc::StatusCode::NOT_FOUND,
                    [this, job](auto* context) {  // allowed, but it has no checkpoint
                      v1::DownloadCheckpointRequest request;
                      request.set_job_id(job);
                      auto reader = coordinator_stub_->DownloadCheckpoint(context, request);
                      v1::DownloadCheckpointResponse chunk;
                      while (reader->Read(&chunk)) {
                      }
                      return reader->Finish();
                    }});
    rpcs.push_back({"ListWorkers", Who::kOperator, grpc::StatusCode::OK, [this](auto* context) {
                      v1::ListWorkersResponse response;
                      return coordinator_stub_->ListWorkers(context, v1::ListWorkersRequest(),
                                                            &response);
                    }});
    rpcs.push_back(
        {"DrainWorker", Who::kOperator, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
           v1::DrainWorkerRequest request;  // allowed, but there is no such worker
           request.set_worker_id("no-such-worker");
           v1::Worker worker;
           return coordinator_stub_->DrainWorker(context, request, &worker);
         }});
    rpcs.push_back({"Attach", Who::kWorker, grpc::StatusCode::OK, [this](auto* context) {
                      auto stream = worker_stub_->Attach(context);
                      v1::AgentMessage message;
                      message.mutable_register_()->set_worker_id("matrix-agent");
                      message.mutable_register_()->set_address("matrix-agent.test");
                      message.mutable_register_()->set_cpu_slots(1);
                      stream->Write(message);
                      v1::CoordinatorMessage reply;
                      const bool registered = stream->Read(&reply) && reply.has_registered();
                      stream->WritesDone();
                      while (stream->Read(&reply)) {  // e.g. an Assign for a job submitted above
                      }
                      grpc::Status status = stream->Finish();
                      if (status.ok() && !registered) {
                        return grpc::Status(grpc::StatusCode::UNKNOWN, "no `registered` reply");
                      }
                      return status;
                    }});
    rpcs.push_back(
        {"ReportProgress", Who::kWorker, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
           v1::ReportProgressRequest request;
           request.set_job_id("no-such-job");
           request.set_attempt(1);
           v1::ReportProgressResponse response;
           return worker_stub_->ReportProgress(context, request, &response);
         }});
    rpcs.push_back(
        {"FetchCheckpoint", Who::kWorker, grpc::StatusCode::NOT_FOUND, [this](auto* context) {
           v1::FetchCheckpointRequest request;  // allowed, but there is no such job
           request.set_job_id("no-such-job");
           auto reader = worker_stub_->FetchCheckpoint(context, request);
           v1::DownloadCheckpointResponse chunk;
           while (reader->Read(&chunk)) {
           }
           return reader->Finish();
         }});
    return rpcs;
  }

  // Whether `caller` may call an RPC for `who`.
  static bool Allowed(Who who, const std::string& caller) {
    switch (who) {
      case Who::kAnyClient:
        return caller == "operator" || caller == "owner" || caller == "other user";
      case Who::kJobOwner:
        return caller == "operator" || caller == "owner";
      case Who::kOperator:
        return caller == "operator";
      case Who::kWorker:
        return caller == "worker";
    }
    return false;
  }

  std::string alice_job_;
};

TEST_F(AuthMatrixTest, EachRpcAnswersOnlyWhoMayCallIt) {
  const std::vector<Caller> callers = {{"no token", ""},           {"wrong token", "not-a-token"},
                                       {"operator", kClientToken}, {"owner", kAliceToken},
                                       {"other user", kBobToken},  {"worker", kWorkerToken}};
  int cells = 0;
  for (const Rpc& rpc : Rpcs()) {
    for (const Caller& caller : callers) {
      SCOPED_TRACE(rpc.name + " by " + caller.name);
      auto context = Context(caller.token);
      const grpc::Status status = rpc.call(context.get());
      ++cells;
      if (caller.name == "no token" || caller.name == "wrong token") {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
      } else if (Allowed(rpc.who, caller.name)) {
        EXPECT_EQ(status.error_code(), rpc.allowed_code) << status.error_message();
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << status.error_message();
      }
    }
  }
  EXPECT_EQ(cells, 13 * 6);  // 12 RPCs, ListJobs twice (own jobs, all owners)
}

TEST_F(AuthMatrixTest, UsersListTheirOwnJobsAndOperatorsCanListEveryOwners) {
  const std::string bobs = Submit(CpuSpec(1), "", kBobToken).id();
  const std::string ops = Submit(CpuSpec(1)).id();
  const auto list = [&](const std::string& token, bool all) {
    auto context = Context(token);
    v1::ListJobsRequest request;
    request.set_all_owners(all);
    v1::ListJobsResponse response;
    EXPECT_TRUE(coordinator_stub_->ListJobs(context.get(), request, &response).ok());
    std::set<std::string> ids;
    for (const v1::Job& job : response.jobs()) ids.insert(job.id());
    return ids;
  };
  EXPECT_EQ(list(kAliceToken, false), std::set<std::string>({alice_job_}));
  EXPECT_EQ(list(kBobToken, false), std::set<std::string>({bobs}));
  EXPECT_EQ(list(kClientToken, false), std::set<std::string>({ops}));
  EXPECT_EQ(list(kClientToken, true), std::set<std::string>({alice_job_, bobs, ops}));
  EXPECT_EQ(Get(bobs).owner(), "bob");
  EXPECT_EQ(Get(alice_job_).owner(), "alice");
}

TEST_F(AuthMatrixTest, AUserWatchingEveryJobSeesOnlyTheirs) {
  Submit(CpuSpec(1), "", kBobToken);
  const std::string active = Submit(CpuSpec(1), "", kAliceToken).id();
  auto context = Context(kAliceToken);
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  auto reader = coordinator_stub_->WatchJob(context.get(), v1::WatchJobRequest());
  v1::JobUpdate update;
  std::set<std::string> seen;
  while (reader->Read(&update)) seen.insert(update.job_id());
  reader->Finish();
  EXPECT_EQ(seen, std::set<std::string>({active}));
}

TEST_F(AuthMatrixTest, RefusedCallsChangeNothing) {
  for (const std::string& token : {std::string(), std::string("nope"), std::string(kWorkerToken)}) {
    auto context = Context(token);
    v1::SubmitJobRequest request;
    *request.mutable_spec() = CpuSpec(1);
    v1::Job job;
    EXPECT_FALSE(coordinator_stub_->SubmitJob(context.get(), request, &job).ok());
  }
  auto context = Context(kBobToken);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(alice_job_);
  v1::Job job;
  EXPECT_EQ(coordinator_stub_->CancelJob(context.get(), cancel, &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto list = Context(kClientToken);
  v1::ListJobsRequest request;
  request.set_all_owners(true);
  v1::ListJobsResponse response;
  ASSERT_TRUE(coordinator_stub_->ListJobs(list.get(), request, &response).ok());
  EXPECT_EQ(response.jobs_size(), 1);  // alice's only
}

// A well-formed checkpoint id that names nothing.
std::string IdNoCheckpointHas() { return "ck-" + std::string(20, 'a'); }

// Node credentials: node-1's token registers only as node-1 and acts only for
// the ranks placed on node-1; node-2's is refused there; the fleet token
// (the environment shortcut) may act as any node.
TEST_F(AuthMatrixTest, NodeCredentialsActOnlyForTheirOwnRanks) {
  const auto attach = [&](const std::string& worker_id, grpc::ClientContext* context) {
    auto stream = worker_stub_->Attach(context);
    v1::AgentMessage hello;
    hello.mutable_register_()->set_worker_id(worker_id);
    hello.mutable_register_()->set_address(worker_id + ".test");
    hello.mutable_register_()->set_cpu_slots(1);
    stream->Write(hello);
    return stream;
  };
  {
    auto context = Context(kNode2Token);
    auto stream = attach("node-1", context.get());
    v1::CoordinatorMessage reply;
    EXPECT_FALSE(stream->Read(&reply));
    const grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_NE(status.error_message().find("may register only as worker 'node-2'"),
              std::string::npos)
        << status.error_message();
  }
  auto node1_context = Context(kNode1Token);
  auto node1 = attach("node-1", node1_context.get());
  v1::CoordinatorMessage reply;
  ASSERT_TRUE(node1->Read(&reply));
  ASSERT_TRUE(reply.has_registered());
  const v1::Job job = Submit(CpuSpec(1), "", kAliceToken);
  ASSERT_TRUE(node1->Read(&reply));
  ASSERT_TRUE(reply.has_assign()) << reply.DebugString();
  const int attempt = reply.assign().task().attempt();

  const auto report = [&](const std::string& token) {
    v1::ReportProgressRequest request;
    request.set_job_id(job.id());
    request.set_attempt(attempt);
    request.set_rank(0);
    request.mutable_progress()->set_step(1);
    v1::ReportProgressResponse response;
    auto context = Context(token);
    return worker_stub_->ReportProgress(context.get(), request, &response);
  };
  const auto fetch = [&](const std::string& token) {
    v1::FetchCheckpointRequest request;
    request.set_job_id(job.id());
    request.set_id(IdNoCheckpointHas());
    auto context = Context(token);
    auto reader = worker_stub_->FetchCheckpoint(context.get(), request);
    v1::DownloadCheckpointResponse chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  const auto upload = [&](const std::string& token) {
    auto context = Context(token);
    v1::UploadCheckpointResponse response;
    auto writer = worker_stub_->UploadCheckpoint(context.get(), &response);
    v1::UploadCheckpointRequest metadata;
    metadata.mutable_metadata()->set_job_id(job.id());
    metadata.mutable_metadata()->set_attempt(attempt);
    metadata.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
    writer->Write(metadata);
    writer->WritesDone();
    return writer->Finish();
  };

  EXPECT_EQ(report(kNode1Token).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(report(kWorkerToken).error_code(), grpc::StatusCode::OK);
  const grpc::Status foreign = report(kNode2Token);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(foreign.error_message().find("worker 'node-2' runs no rank 0 of job " + job.id()),
            std::string::npos)
      << foreign.error_message();

  EXPECT_EQ(fetch(kNode1Token).error_code(), grpc::StatusCode::NOT_FOUND);  // none yet
  EXPECT_EQ(fetch(kWorkerToken).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(fetch(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  EXPECT_EQ(upload(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // node-1's upload passes the check and ends for want of bytes.
  EXPECT_NE(upload(kNode1Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Once the job has ended, a node's report is answered as before: the
  // trainer should stop.
  auto cancel_context = Context(kAliceToken);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  v1::Job cancelled;
  ASSERT_TRUE(coordinator_stub_->CancelJob(cancel_context.get(), cancel, &cancelled).ok());
  EXPECT_EQ(report(kNode2Token).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(fetch(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  node1_context->TryCancel();
}

}  // namespace
}  // namespace clmae
