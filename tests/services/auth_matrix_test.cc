// Every RPC of both services × every kind of caller: no token, an unknown
// token, an operator, the user who owns the job, another user, a worker.
// Users reach their own jobs, operators every job and the workers' RPCs,
// workers only their service.

#include <functional>
#include <memory>
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

// The worker-side calls as a trainer or an agent would make them, and a
// node-1 agent with one of alice's jobs placed on it.
class WorkerCredentialsTest : public AuthMatrixTest {
 protected:
  void SetUp() override {
    AuthMatrixTest::SetUp();
    node1_context_ = Context(kNode1Token);
    node1_ = AttachAs("node-1", node1_context_.get());
    v1::CoordinatorMessage reply;
    ASSERT_TRUE(node1_->Read(&reply));
    ASSERT_TRUE(reply.has_registered());
    job_ = Submit(CpuSpec(1), "", kAliceToken).id();
    ASSERT_TRUE(node1_->Read(&reply));
    ASSERT_TRUE(reply.has_assign()) << reply.DebugString();
    task_ = reply.assign().task();
  }

  void TearDown() override {
    node1_context_->TryCancel();
    node1_->Finish();
    AuthMatrixTest::TearDown();
  }

  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> AttachAs(
      const std::string& worker_id, grpc::ClientContext* context) {
    auto stream = worker_stub_->Attach(context);
    v1::AgentMessage hello;
    hello.mutable_register_()->set_worker_id(worker_id);
    hello.mutable_register_()->set_address(worker_id + ".test");
    hello.mutable_register_()->set_cpu_slots(1);
    stream->Write(hello);
    return stream;
  }

  // How an Attach with `token` as `worker_id` ends, or OK once registered.
  grpc::Status Register(const std::string& token, const std::string& worker_id) {
    auto context = Context(token);
    auto stream = AttachAs(worker_id, context.get());
    v1::CoordinatorMessage reply;
    if (stream->Read(&reply) && reply.has_registered()) {
      context->TryCancel();
      stream->Finish();
      return grpc::Status::OK;
    }
    return stream->Finish();
  }

  grpc::Status Report(const std::string& token, int rank = 0, int attempt_offset = 0) {
    v1::ReportProgressRequest request;
    request.set_job_id(job_);
    request.set_attempt(task_.attempt() + attempt_offset);
    request.set_rank(rank);
    request.mutable_progress()->set_step(1);
    v1::ReportProgressResponse response;
    auto context = Context(token);
    return worker_stub_->ReportProgress(context.get(), request, &response);
  }

  grpc::Status Fetch(const std::string& token) {
    v1::FetchCheckpointRequest request;
    request.set_job_id(job_);
    request.set_id("ck-" + std::string(20, 'a'));  // well-formed, names nothing
    auto context = Context(token);
    auto reader = worker_stub_->FetchCheckpoint(context.get(), request);
    v1::DownloadCheckpointResponse chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  }

  // An upload's metadata alone: an allowed caller gets past the credential
  // checks and is refused for want of bytes.
  grpc::Status Upload(const std::string& token) {
    auto context = Context(token);
    v1::UploadCheckpointResponse response;
    auto writer = worker_stub_->UploadCheckpoint(context.get(), &response);
    v1::UploadCheckpointRequest metadata;
    metadata.mutable_metadata()->set_job_id(job_);
    metadata.mutable_metadata()->set_attempt(task_.attempt());
    metadata.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
    writer->Write(metadata);
    writer->WritesDone();
    return writer->Finish();
  }

  void CancelTheJob() {
    auto context = Context(kAliceToken);
    v1::CancelJobRequest cancel;
    cancel.set_job_id(job_);
    v1::Job cancelled;
    ASSERT_TRUE(coordinator_stub_->CancelJob(context.get(), cancel, &cancelled).ok());
  }

  static bool Says(const grpc::Status& status, const std::string& text) {
    return status.error_message().find(text) != std::string::npos;
  }

  std::unique_ptr<grpc::ClientContext> node1_context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> node1_;
  std::string job_;
  v1::TaskAssignment task_;
};

// Node credentials: node-1's token registers only as node-1 and acts only for
// the ranks placed on node-1; node-2's is refused there; the fleet token
// (the environment shortcut) may act as any node.
TEST_F(WorkerCredentialsTest, NodeCredentialsActOnlyForTheirOwnRanks) {
  const grpc::Status impostor = Register(kNode2Token, "node-1");
  EXPECT_EQ(impostor.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Says(impostor, "may register only as worker 'node-2'")) << impostor.error_message();
  EXPECT_TRUE(Register(kNode2Token, "node-2").ok());

  EXPECT_EQ(Report(kNode1Token).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(Report(kWorkerToken).error_code(), grpc::StatusCode::OK);
  const grpc::Status foreign = Report(kNode2Token);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Says(foreign, "worker 'node-2' runs no rank 0 of job " + job_))
      << foreign.error_message();

  EXPECT_EQ(Fetch(kNode1Token).error_code(), grpc::StatusCode::NOT_FOUND);  // none yet
  EXPECT_EQ(Fetch(kWorkerToken).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Fetch(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  EXPECT_EQ(Upload(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Upload(kNode1Token).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  for (const char* node : {kNode1Token, kNode2Token}) {  // not a client
    auto context = Context(node);
    v1::GetJobRequest request;
    request.set_job_id(job_);
    v1::Job job;
    EXPECT_EQ(coordinator_stub_->GetJob(context.get(), request, &job).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // Once the job has ended a node's report is answered as before (the
  // trainer should stop); fetching its checkpoints stays refused.
  CancelTheJob();
  EXPECT_EQ(Report(kNode2Token).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Fetch(kNode2Token).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// The credential issued with an assignment: the trainer of that rank may
// report and upload for it alone, nothing else, and only while it runs.
TEST_F(WorkerCredentialsTest, TaskCredentialsActOnlyForTheirRankWhileItRuns) {
  const std::string token = task_.task_token();
  ASSERT_EQ(token.rfind("task:" + job_ + ":", 0), 0u) << token;

  EXPECT_EQ(Report(token).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(Upload(token).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // past the checks
  const grpc::Status other_rank = Report(token, /*rank=*/1);
  EXPECT_EQ(other_rank.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Says(other_rank, "cannot act for rank 1")) << other_rank.error_message();
  EXPECT_EQ(Report(token, 0, /*attempt_offset=*/1).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Not an agent, a user or an operator.
  EXPECT_EQ(Register(token, "node-1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status fetch = Fetch(token);
  EXPECT_EQ(fetch.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Says(fetch, "may only report progress and upload checkpoints"))
      << fetch.error_message();
  {
    auto context = Context(token);
    v1::GetJobRequest request;
    request.set_job_id(job_);
    v1::Job job;
    EXPECT_EQ(coordinator_stub_->GetJob(context.get(), request, &job).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // Forged: another rank's token made by changing the rank, a changed MAC.
  std::string forged = token;
  forged.replace(forged.rfind(":0:"), 3, ":1:");
  EXPECT_EQ(Report(forged, 1).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::string tampered = token;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_EQ(Report(tampered).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // The task ends: the credential stops working, and says the trainer should
  // stop (what a trainer does on FAILED_PRECONDITION).
  CancelTheJob();
  const grpc::Status ended = Report(token);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Says(ended, "is no longer valid")) << ended.error_message();
  EXPECT_EQ(Upload(token).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace clmae
