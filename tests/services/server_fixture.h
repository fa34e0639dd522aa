#pragma once

// A Coordinator on a temporary store served by a CoordinatorServer on a
// loopback port (port 0), with one client and one worker token; stubs reach
// it through the server's in-process channel. Real clock, no ticker: the
// tests drive every step through RPCs.

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "clmae/v1/coordinator.grpc.pb.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "coordinator/coordinator.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "services/grpc_client.h"
#include "services/server.h"

namespace clmae {

// The operator "ops", the fleet worker "agents" (any node), two users, and
// the node credentials of the workers "node-1" and "node-2".
inline constexpr char kClientToken[] = "client-secret-1";
inline constexpr char kWorkerToken[] = "worker-secret-2";
inline constexpr char kAliceToken[] = "alice-secret-3";
inline constexpr char kBobToken[] = "bob-secret-4";
inline constexpr char kNode1Token[] = "node-1-secret-5";
inline constexpr char kNode2Token[] = "node-2-secret-6";

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_server_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    CoordinatorOptions options;
    options.store_path = dir_ + "/coordinator.db";
    options.checkpoint_dir = dir_ + "/checkpoints";
    options.checkpoint_s3 = checkpoint_s3_;
    options.lease = absl::Seconds(30);
    options.heartbeat_interval = absl::Seconds(5);
    options.validate_spec = ValidateJobSpec;
    auto opened = Coordinator::Open(std::move(options));
    ASSERT_TRUE(opened.ok()) << opened.status();
    coordinator_ = std::move(*opened);

    ServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    server_options.tokens = {TokenEntry::ForToken("ops", Role::kOperator, kClientToken),
                             TokenEntry::ForToken("agents", Role::kWorker, kWorkerToken,
                                                  /*fleet=*/true),
                             TokenEntry::ForToken("alice", Role::kUser, kAliceToken),
                             TokenEntry::ForToken("bob", Role::kUser, kBobToken),
                             TokenEntry::ForToken("node-1", Role::kWorker, kNode1Token),
                             TokenEntry::ForToken("node-2", Role::kWorker, kNode2Token)};
    server_options.reflection = reflection_;
    auto started = CoordinatorServer::Start(server_options, coordinator_.get());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    channel_ = server_->InProcessChannel();
    coordinator_stub_ = v1::Coordinator::NewStub(channel_);
    worker_stub_ = v1::WorkerControl::NewStub(channel_);
  }

  // Set by a derived fixture's constructor, before SetUp.
  bool reflection_ = false;
  // Set by a derived fixture before SetUp: checkpoints in object storage.
  std::optional<S3BackendOptions> checkpoint_s3_;

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    coordinator_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A context carrying `token` (none when empty) and a deadline that only
  // keeps a broken test from hanging.
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    ClientOptions options;
    options.token = token;
    AuthorizeCall(*context, options);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return context;
  }

  // The example job, on the CPU with `world_size` ranks.
  static v1::JobSpec CpuSpec(int world_size) {
    auto spec =
        LoadJobSpecFile(std::string(CLMAE_SOURCE_DIR) + "/examples/tiny-fashion-mnist.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status();
    spec->mutable_resources()->set_world_size(world_size);
    return *spec;
  }

  v1::Job Submit(const v1::JobSpec& spec, const std::string& request_id = "",
                 const std::string& token = kClientToken) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    v1::Job job;
    auto context = Context(token);
    grpc::Status status = coordinator_stub_->SubmitJob(context.get(), request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  v1::Job Get(const std::string& job_id) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::Job job;
    auto context = Context(kClientToken);
    grpc::Status status = coordinator_stub_->GetJob(context.get(), request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_stub_;
  std::unique_ptr<v1::WorkerControl::Stub> worker_stub_;
};

}  // namespace clmae
