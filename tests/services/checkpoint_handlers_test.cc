// The checkpoint RPCs end to end through the server: a fake agent runs a
// job, the "trainer" uploads over WorkerControl.UploadCheckpoint, clients
// list and download over the Coordinator service, and a restarted attempt's
// assignment names the newest committed checkpoint.

#include <atomic>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

class CheckpointHandlersTest : public ServerFixture {
 protected:
  void SetUp() override {
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
    ASSERT_TRUE(reply.has_registered());
    job_ = Submit(CpuSpec(1));
    ASSERT_NO_FATAL_FAILURE(ExpectAssignment(&task_));
    ASSERT_TRUE(agent_->Write(Status(v1::TaskStatus::RUNNING, 0)));
  }

  void TearDown() override {
    if (agent_ != nullptr) {
      agent_context_->TryCancel();
      agent_->Finish();
    }
    ServerFixture::TearDown();
  }

  void ExpectAssignment(v1::TaskAssignment* task) {
    v1::CoordinatorMessage reply;
    while (true) {
      ASSERT_TRUE(agent_->Read(&reply));
      if (reply.has_assign()) break;
    }
    *task = reply.assign().task();
  }

  v1::AgentMessage Status(v1::TaskStatus::State state, int exit_code) const {
    v1::AgentMessage message;
    v1::TaskStatus* status = message.mutable_task_status();
    status->set_job_id(task_.job_id());
    status->set_attempt(task_.attempt());
    status->set_rank(task_.rank());
    status->set_state(state);
    status->set_exit_code(exit_code);
    return message;
  }

  v1::CheckpointMetadata Metadata(const std::string& bytes, int64_t step) const {
    v1::CheckpointMetadata m;
    m.set_job_id(job_.id());
    m.set_attempt(task_.attempt());
    m.set_kind(v1::CHECKPOINT_KIND_FULL);
    m.set_step(step);
    m.set_epoch(1);
    m.set_curriculum_factor(0.25);
    m.set_loss_mae(0.5);
    m.set_size_bytes(static_cast<int64_t>(bytes.size()));
    m.set_sha256(Sha256Hex(bytes));
    return m;
  }

  // Sends `metadata` and `bytes` in `chunk`-sized pieces.
  // With `trailer`, the digest goes after the bytes instead.
  grpc::Status Upload(const v1::CheckpointMetadata& metadata, const std::string& bytes,
                      v1::UploadCheckpointResponse* response, size_t chunk = 1 << 20,
                      const std::string& token = kWorkerToken,
                      std::optional<std::string> trailer = std::nullopt) {
    auto context = Context(token);
    auto writer = worker_stub_->UploadCheckpoint(context.get(), response);
    v1::UploadCheckpointRequest request;
    *request.mutable_metadata() = metadata;
    writer->Write(request);
    for (size_t at = 0; at < bytes.size(); at += chunk) {
      request.set_data(bytes.substr(at, chunk));
      if (!writer->Write(request)) break;
    }
    if (trailer.has_value()) {
      request.set_sha256(*trailer);
      writer->Write(request);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Downloads by `request`; returns the bytes (and the record).
  grpc::Status Download(const v1::DownloadCheckpointRequest& request, std::string* bytes,
                        v1::Checkpoint* record, const std::string& token = kClientToken) {
    auto context = Context(token);
    auto reader = coordinator_stub_->DownloadCheckpoint(context.get(), request);
    v1::DownloadCheckpointResponse part;
    bytes->clear();
    while (reader->Read(&part)) {
      if (part.has_checkpoint()) *record = part.checkpoint();
      if (part.has_data()) bytes->append(part.data());
    }
    return reader->Finish();
  }

  // Fetches as an agent; returns the bytes.
  grpc::Status Fetch(const std::string& job_id, const std::string& id, std::string* bytes) {
    v1::FetchCheckpointRequest fetch;
    fetch.set_job_id(job_id);
    fetch.set_id(id);
    auto context = Context(kWorkerToken);
    auto reader = worker_stub_->FetchCheckpoint(context.get(), fetch);
    v1::DownloadCheckpointResponse part;
    bytes->clear();
    while (reader->Read(&part)) {
      if (part.has_data()) bytes->append(part.data());
    }
    return reader->Finish();
  }

  // Overwrites the byte at `at` of the checkpoint's file in the store.
  void FlipByte(const v1::Checkpoint& checkpoint, int64_t at) {
    const std::string& digest = checkpoint.metadata().sha256();
    const std::string path = dir_ + "/checkpoints/blobs/" + digest.substr(0, 2) + "/" + digest;
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << path;
    file.seekg(at);
    const char c = static_cast<char>(file.get());
    file.seekp(at);
    file.put(static_cast<char>(c ^ 0x01));
  }

  // Fails the rank and returns the next attempt's assignment.
  void Restart(v1::TaskAssignment* restarted) {
    ASSERT_TRUE(agent_->Write(Status(v1::TaskStatus::EXITED, 1)));
    // Ticks from past the first restart's back-off (well within the lease).
    const absl::Duration backoff = CoordinatorOptions().restart_backoff_min;
    std::atomic<bool> assigned{false};
    std::thread ticker([&] {
      for (int i = 0; i < 50 && !assigned; ++i) {
        coordinator_->Tick(absl::Now() + backoff);
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
    ExpectAssignment(restarted);
    assigned = true;
    ticker.join();
  }

  std::vector<v1::Checkpoint> List() {
    v1::ListCheckpointsRequest request;
    request.set_job_id(job_.id());
    v1::ListCheckpointsResponse response;
    auto context = Context(kClientToken);
    grpc::Status status = coordinator_stub_->ListCheckpoints(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.checkpoints().begin(), response.checkpoints().end()};
  }

  std::unique_ptr<grpc::ClientContext> agent_context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> agent_;
  v1::Job job_;
  v1::TaskAssignment task_;
};

TEST_F(CheckpointHandlersTest, DownloadedBytesEqualUploadedBytes) {
  const std::string bytes = RandomBytes(3 * (1 << 20) + 12345, 1);
  v1::UploadCheckpointResponse uploaded;
  grpc::Status status = Upload(Metadata(bytes, 40), bytes, &uploaded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(uploaded.checkpoint().id(), ::testing::StartsWith("ck-"));
  EXPECT_EQ(uploaded.checkpoint().metadata().sha256(), Sha256Hex(bytes));

  const std::vector<v1::Checkpoint> listed = List();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id(), uploaded.checkpoint().id());
  EXPECT_EQ(listed[0].metadata().step(), 40);
  EXPECT_DOUBLE_EQ(listed[0].metadata().curriculum_factor(), 0.25);

  v1::DownloadCheckpointRequest by_id;
  by_id.set_job_id(job_.id());
  by_id.set_id(uploaded.checkpoint().id());
  std::string got;
  v1::Checkpoint record;
  status = Download(by_id, &got, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(record.metadata().size_bytes(), static_cast<int64_t>(bytes.size()));

  v1::DownloadCheckpointRequest latest;
  latest.set_job_id(job_.id());
  latest.set_latest(true);
  latest.set_offset(1234567);
  status = Download(latest, &got, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, bytes.substr(1234567));
  EXPECT_EQ(record.id(), uploaded.checkpoint().id());

  v1::DownloadCheckpointRequest by_step;
  by_step.set_job_id(job_.id());
  by_step.set_step(40);
  status = Download(by_step, &got, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, bytes);
  by_step.set_step(41);
  EXPECT_EQ(Download(by_step, &got, &record).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CheckpointHandlersTest, WrongDigestIsRejectedAndNotRecorded) {
  const std::string bytes = RandomBytes(100000, 2);
  v1::CheckpointMetadata metadata = Metadata(bytes, 10);
  metadata.set_sha256(Sha256Hex("something else"));
  v1::UploadCheckpointResponse response;
  grpc::Status status = Upload(metadata, bytes, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("SHA-256"));
  EXPECT_TRUE(List().empty());
}

TEST_F(CheckpointHandlersTest, TheDigestMayFollowTheBytes) {
  const std::string bytes = RandomBytes(2500000, 11);
  v1::CheckpointMetadata metadata = Metadata(bytes, 10);
  metadata.clear_sha256();
  v1::UploadCheckpointResponse response;
  grpc::Status status = Upload(metadata, bytes, &response, 1 << 20, kWorkerToken, Sha256Hex(bytes));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.checkpoint().metadata().sha256(), Sha256Hex(bytes));

  // A wrong trailing digest, or none at all, records nothing.
  metadata.set_step(20);
  status = Upload(metadata, bytes, &response, 1 << 20, kWorkerToken, Sha256Hex("other"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = Upload(metadata, bytes, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("without the SHA-256"));
  ASSERT_EQ(List().size(), 1u);
  EXPECT_EQ(List()[0].metadata().step(), 10);
}

TEST_F(CheckpointHandlersTest, TruncatedStreamIsRejectedAndNotRecorded) {
  const std::string bytes = RandomBytes(300000, 3);
  v1::UploadCheckpointResponse response;
  grpc::Status status = Upload(Metadata(bytes, 10), bytes.substr(0, 200000), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("200000"));
  EXPECT_TRUE(List().empty());
}

TEST_F(CheckpointHandlersTest, ChunksOverOneMebibyteAreRefused) {
  const std::string bytes = RandomBytes((1 << 20) + 1, 4);
  v1::UploadCheckpointResponse response;
  grpc::Status status = Upload(Metadata(bytes, 10), bytes, &response, bytes.size());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("1 MiB"));
  EXPECT_TRUE(List().empty());
}

TEST_F(CheckpointHandlersTest, OnlyWorkersUploadAndOnlyClientsListAndDownload) {
  const std::string bytes = RandomBytes(1000, 5);
  v1::UploadCheckpointResponse response;
  EXPECT_EQ(Upload(Metadata(bytes, 10), bytes, &response, 1 << 20, kClientToken).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Upload(Metadata(bytes, 10), bytes, &response).ok());

  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_.id());
  request.set_latest(true);
  std::string got;
  v1::Checkpoint record;
  EXPECT_EQ(Download(request, &got, &record, kWorkerToken).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(got.empty());

  v1::ListCheckpointsRequest list;
  list.set_job_id(job_.id());
  v1::ListCheckpointsResponse listed;
  auto context = Context(kWorkerToken);
  EXPECT_EQ(coordinator_stub_->ListCheckpoints(context.get(), list, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CheckpointHandlersTest, UploadsOfAnotherAttemptOrJobAreRefused) {
  const std::string bytes = RandomBytes(1000, 6);
  v1::CheckpointMetadata stale = Metadata(bytes, 10);
  stale.set_attempt(task_.attempt() + 1);
  v1::UploadCheckpointResponse response;
  grpc::Status status = Upload(stale, bytes, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("attempt 2"));

  v1::CheckpointMetadata unknown = Metadata(bytes, 10);
  unknown.set_job_id("no-such-job");
  EXPECT_EQ(Upload(unknown, bytes, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(List().empty());
}

TEST_F(CheckpointHandlersTest, PathLikeIdsAreRejected) {
  for (const std::string id : {"../../etc/passwd", "/etc/passwd", "ck-../../../etc/passwd", ""}) {
    v1::DownloadCheckpointRequest request;
    request.set_job_id(job_.id());
    request.set_id(id);
    std::string got;
    v1::Checkpoint record;
    EXPECT_EQ(Download(request, &got, &record).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << id;
    EXPECT_TRUE(got.empty());

    v1::FetchCheckpointRequest fetch;
    fetch.set_job_id(job_.id());
    fetch.set_id(id);
    auto context = Context(kWorkerToken);
    auto reader = worker_stub_->FetchCheckpoint(context.get(), fetch);
    v1::DownloadCheckpointResponse part;
    while (reader->Read(&part)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
  }
}

TEST_F(CheckpointHandlersTest, UnknownKindsAreRejected) {
  v1::ListCheckpointsRequest list;
  list.set_job_id(job_.id());
  list.set_kind(static_cast<v1::CheckpointKind>(42));
  v1::ListCheckpointsResponse listed;
  auto context = Context(kClientToken);
  EXPECT_EQ(coordinator_stub_->ListCheckpoints(context.get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::DownloadCheckpointRequest download;
  download.set_job_id(job_.id());
  download.set_latest(true);
  download.set_kind(static_cast<v1::CheckpointKind>(42));
  std::string got;
  v1::Checkpoint record;
  EXPECT_EQ(Download(download, &got, &record).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CheckpointHandlersTest, ConcurrentDownloadsAllGetTheBytes) {
  const std::string bytes = RandomBytes(2 * (1 << 20) + 7, 7);
  v1::UploadCheckpointResponse uploaded;
  ASSERT_TRUE(Upload(Metadata(bytes, 20), bytes, &uploaded).ok());
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_.id());
  request.set_id(uploaded.checkpoint().id());
  constexpr int kClients = 6;
  std::vector<std::string> got(kClients);
  std::vector<grpc::StatusCode> codes(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      v1::Checkpoint record;
      codes[i] = Download(request, &got[i], &record).error_code();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(codes[i], grpc::StatusCode::OK) << i;
    EXPECT_TRUE(got[i] == bytes) << "client " << i << " got " << got[i].size() << " bytes";
  }
}

TEST_F(CheckpointHandlersTest, ARestartedAttemptResumesFromTheNewestCommittedCheckpoint) {
  const std::string older = RandomBytes(5000, 8);
  const std::string newer = RandomBytes(6000, 9);
  v1::UploadCheckpointResponse first, second;
  ASSERT_TRUE(Upload(Metadata(older, 10), older, &first).ok());
  ASSERT_TRUE(Upload(Metadata(newer, 20), newer, &second).ok());
  // A broken upload of a later step is not a candidate.
  const std::string broken = RandomBytes(7000, 10);
  v1::UploadCheckpointResponse ignored;
  EXPECT_FALSE(Upload(Metadata(broken, 30), broken.substr(0, 10), &ignored).ok());

  // The rank fails: the attempt is requeued and placed again on the agent.
  v1::TaskAssignment restarted;
  ASSERT_NO_FATAL_FAILURE(Restart(&restarted));
  EXPECT_EQ(restarted.attempt(), task_.attempt() + 1);
  EXPECT_EQ(restarted.resume_checkpoint(), second.checkpoint().id());
  EXPECT_EQ(restarted.resume_sha256(), Sha256Hex(newer));
  EXPECT_EQ(restarted.resume_size_bytes(), static_cast<int64_t>(newer.size()));

  // The agent fetches it with its worker token.
  v1::FetchCheckpointRequest fetch;
  fetch.set_job_id(job_.id());
  fetch.set_id(restarted.resume_checkpoint());
  auto context = Context(kWorkerToken);
  auto reader = worker_stub_->FetchCheckpoint(context.get(), fetch);
  v1::DownloadCheckpointResponse part;
  std::string got;
  while (reader->Read(&part)) {
    if (part.has_data()) got += part.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, newer);
}

TEST_F(CheckpointHandlersTest, ACorruptFileEndsTheDownloadWithDataLossAndIsQuarantined) {
  const std::string older = RandomBytes(100000, 12);
  const std::string newer = RandomBytes(3 * (1 << 20) + 99, 13);
  v1::UploadCheckpointResponse first, second;
  ASSERT_TRUE(Upload(Metadata(older, 10), older, &first).ok());
  ASSERT_TRUE(Upload(Metadata(newer, 20), newer, &second).ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(second.checkpoint(), 2 * (1 << 20) + 17));

  v1::DownloadCheckpointRequest by_id;
  by_id.set_job_id(job_.id());
  by_id.set_id(second.checkpoint().id());
  std::string got;
  v1::Checkpoint record;
  grpc::Status status = Download(by_id, &got, &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("checkpoint ", second.checkpoint().id(),
                                     " failed verification on the coordinator: ")));
  EXPECT_THAT(status.error_message(), HasSubstr("it has been quarantined"));
  EXPECT_LT(got.size(), newer.size()) << "the corrupt file was not sent whole";

  // From now on only the older one is offered.
  const std::vector<v1::Checkpoint> listed = List();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id(), first.checkpoint().id());
  v1::DownloadCheckpointRequest latest;
  latest.set_job_id(job_.id());
  latest.set_latest(true);
  status = Download(latest, &got, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.id(), first.checkpoint().id());
  EXPECT_EQ(got, older);
  v1::DownloadCheckpointRequest by_step;
  by_step.set_job_id(job_.id());
  by_step.set_step(20);
  EXPECT_EQ(Download(by_step, &got, &record).error_code(), grpc::StatusCode::NOT_FOUND);
  // By its id, clients and agents are told why.
  status = Download(by_id, &got, &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("quarantined"));
  EXPECT_TRUE(got.empty());
  status = Fetch(job_.id(), second.checkpoint().id(), &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("quarantined"));
}

TEST_F(CheckpointHandlersTest, ADownloadFromAnOffsetVerifiesTheBytesBeforeIt) {
  const std::string bytes = RandomBytes(2 * (1 << 20) + 5, 14);
  v1::UploadCheckpointResponse uploaded;
  ASSERT_TRUE(Upload(Metadata(bytes, 10), bytes, &uploaded).ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(uploaded.checkpoint(), 3));
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_.id());
  request.set_id(uploaded.checkpoint().id());
  request.set_offset(1 << 20);
  std::string got;
  v1::Checkpoint record;
  const grpc::Status status = Download(request, &got, &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr("quarantined"));
  EXPECT_TRUE(List().empty());
}

TEST_F(CheckpointHandlersTest, AnAgentsFetchOfACorruptFileEndsWithDataLoss) {
  const std::string bytes = RandomBytes(300000, 15);
  v1::UploadCheckpointResponse uploaded;
  ASSERT_TRUE(Upload(Metadata(bytes, 10), bytes, &uploaded).ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(uploaded.checkpoint(), 299999));
  std::string got;
  const grpc::Status status = Fetch(job_.id(), uploaded.checkpoint().id(), &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr("failed verification on the coordinator"));
  EXPECT_NE(got, bytes);
  EXPECT_TRUE(List().empty()) << "quarantined";
}

TEST_F(CheckpointHandlersTest, ARestartedAttemptPassesOverAQuarantinedCheckpoint) {
  const std::string older = RandomBytes(5000, 16);
  const std::string newer = RandomBytes(6000, 17);
  v1::UploadCheckpointResponse first, second;
  ASSERT_TRUE(Upload(Metadata(older, 10), older, &first).ok());
  ASSERT_TRUE(Upload(Metadata(newer, 20), newer, &second).ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(second.checkpoint(), 100));
  std::string got;
  ASSERT_EQ(Fetch(job_.id(), second.checkpoint().id(), &got).error_code(),
            grpc::StatusCode::DATA_LOSS);

  v1::TaskAssignment restarted;
  ASSERT_NO_FATAL_FAILURE(Restart(&restarted));
  EXPECT_EQ(restarted.resume_checkpoint(), first.checkpoint().id());
  EXPECT_EQ(restarted.resume_sha256(), Sha256Hex(older));
  const grpc::Status status = Fetch(job_.id(), restarted.resume_checkpoint(), &got);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, older);
}

TEST_F(CheckpointHandlersTest, AnEmptyJobIdIsInvalidArgument) {
  v1::ListCheckpointsRequest list;
  v1::ListCheckpointsResponse listed;
  auto context = Context(kClientToken);
  grpc::Status status = coordinator_stub_->ListCheckpoints(context.get(), list, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("job_id: required"));

  v1::DownloadCheckpointRequest download;
  download.set_latest(true);
  std::string got;
  v1::Checkpoint record;
  status = Download(download, &got, &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("job_id: required"));

  status = Fetch("", "ck-aaaaaaaaaaaaaaaaaaaa", &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("job_id: required"));
}

}  // namespace
}  // namespace clmae
