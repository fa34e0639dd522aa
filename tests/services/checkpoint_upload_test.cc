#include "services/checkpoint_upload.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Le;

// Records every upload message in order and answers like the coordinator:
// the metadata echoed back under an id, or `answer` when it is an error.
class FakeUploadService final : public v1::WorkerControl::Service {
 public:
  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
                                v1::UploadCheckpointResponse* response) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    auto token = context->client_metadata().find("authorization");
    if (token != context->client_metadata().end()) {
      token_ = std::string(token->second.data(), token->second.size());
    }
    messages_.clear();
    v1::UploadCheckpointRequest request;
    // An early error answers before the bytes are read (as a full disk would).
    if (answer_after_metadata_) {
      if (reader->Read(&request)) messages_.push_back(request);
      return answer_;
    }
    while (reader->Read(&request)) messages_.push_back(request);
    if (!answer_.ok()) return answer_;
    v1::Checkpoint* checkpoint = response->mutable_checkpoint();
    checkpoint->set_id("ck-1");
    if (!messages_.empty()) *checkpoint->mutable_metadata() = messages_.front().metadata();
    if (messages_.size() > 1 &&
        messages_.back().part_case() == v1::UploadCheckpointRequest::kSha256) {
      checkpoint->mutable_metadata()->set_sha256(messages_.back().sha256());
    }
    return grpc::Status::OK;
  }

  void Answer(grpc::Status status, bool after_metadata) {
    absl::MutexLock lock(&mu_);
    answer_ = std::move(status);
    answer_after_metadata_ = after_metadata;
  }
  std::vector<v1::UploadCheckpointRequest> messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  // The data parts concatenated, and their sizes.
  std::string Bytes(std::vector<size_t>* chunk_sizes = nullptr) {
    absl::MutexLock lock(&mu_);
    std::string bytes;
    for (const auto& m : messages_) {
      if (m.part_case() != v1::UploadCheckpointRequest::kData) continue;
      bytes += m.data();
      if (chunk_sizes != nullptr) chunk_sizes->push_back(m.data().size());
    }
    return bytes;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string token() {
    absl::MutexLock lock(&mu_);
    return token_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::UploadCheckpointRequest> messages_ ABSL_GUARDED_BY(mu_);
  grpc::Status answer_ ABSL_GUARDED_BY(mu_) = grpc::Status::OK;
  bool answer_after_metadata_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string token_ ABSL_GUARDED_BY(mu_);
};

class CheckpointUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_upload_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::WorkerControl::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    client_.token = "worker-token";
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  // A file of `size` bytes that differ from position to position.
  std::string WriteFile(const std::string& name, size_t size) {
    std::string bytes(size, '\0');
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 7919 + i / 251) & 0xff);
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    contents_ = bytes;
    return path;
  }

  static v1::CheckpointMetadata Metadata() {
    v1::CheckpointMetadata m;
    m.set_job_id("job-3");
    m.set_attempt(2);
    m.set_kind(v1::CHECKPOINT_KIND_FULL);
    m.set_step(120);
    m.set_epoch(4);
    m.set_curriculum_factor(-0.5);
    m.set_loss_mae(0.25);
    m.set_size_bytes(999);         // replaced from the file
    m.set_sha256("not a digest");  // replaced from the file
    return m;
  }

  std::string dir_;
  std::string contents_;
  FakeUploadService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WorkerControl::Stub> stub_;
  ClientOptions client_;
};

TEST_F(CheckpointUploadTest, SendsMetadataThenTheExactBytesInChunksOfAtMostOneMiBThenTheDigest) {
  const std::string path = WriteFile("step-120.pt", (5 << 19) + 123);  // 2.5 MiB and a bit
  absl::StatusOr<v1::Checkpoint> checkpoint =
      UploadCheckpointFile(*stub_, client_, Metadata(), path, UploadOptions());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->id(), "ck-1");

  const std::vector<v1::UploadCheckpointRequest> messages = service_.messages();
  ASSERT_GE(messages.size(), 2u);
  ASSERT_EQ(messages[0].part_case(), v1::UploadCheckpointRequest::kMetadata);
  const v1::CheckpointMetadata& sent = messages[0].metadata();
  EXPECT_EQ(sent.job_id(), "job-3");
  EXPECT_EQ(sent.attempt(), 2);
  EXPECT_EQ(sent.kind(), v1::CHECKPOINT_KIND_FULL);
  EXPECT_EQ(sent.step(), 120);
  EXPECT_EQ(sent.epoch(), 4);
  EXPECT_EQ(sent.curriculum_factor(), -0.5);
  EXPECT_EQ(sent.size_bytes(), static_cast<int64_t>(contents_.size()));
  EXPECT_EQ(sent.sha256(), "");  // it follows the bytes: the file is read once
  for (size_t i = 1; i + 1 < messages.size(); ++i) {
    EXPECT_EQ(messages[i].part_case(), v1::UploadCheckpointRequest::kData) << "message " << i;
  }
  ASSERT_EQ(messages.back().part_case(), v1::UploadCheckpointRequest::kSha256);
  EXPECT_EQ(messages.back().sha256(), Sha256Hex(contents_));
  std::vector<size_t> chunks;
  EXPECT_EQ(service_.Bytes(&chunks), contents_);
  EXPECT_THAT(chunks, Each(Le(size_t{1} << 20)));
  EXPECT_EQ(chunks.size(), 3u);
  EXPECT_EQ(service_.token(), "Bearer worker-token");
  EXPECT_EQ(checkpoint->metadata().sha256(), Sha256Hex(contents_));
}

TEST_F(CheckpointUploadTest, SmallerChunksAreHonoured) {
  const std::string path = WriteFile("preview.png", 10'500);
  UploadOptions options;
  options.chunk_bytes = 1000;
  ASSERT_TRUE(UploadCheckpointFile(*stub_, client_, Metadata(), path, options).ok());
  std::vector<size_t> chunks;
  EXPECT_EQ(service_.Bytes(&chunks), contents_);
  EXPECT_EQ(chunks.size(), 11u);
  EXPECT_THAT(chunks, Each(Le(size_t{1000})));
}

TEST_F(CheckpointUploadTest, AnEmptyFileSendsTheMetadataAndTheDigestOnly) {
  const std::string path = WriteFile("empty", 0);
  ASSERT_TRUE(UploadCheckpointFile(*stub_, client_, Metadata(), path, UploadOptions()).ok());
  const std::vector<v1::UploadCheckpointRequest> messages = service_.messages();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].metadata().size_bytes(), 0);
  EXPECT_EQ(messages[1].sha256(), Sha256Hex(""));
}

TEST_F(CheckpointUploadTest, ServerErrorsKeepTheirCodeAndMessage) {
  const std::string path = WriteFile("step-120.pt", 3000);
  service_.Answer(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "attempt 2 is not current"),
                  /*after_metadata=*/false);
  absl::StatusOr<v1::Checkpoint> checkpoint =
      UploadCheckpointFile(*stub_, client_, Metadata(), path, UploadOptions());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("attempt 2 is not current"));
}

TEST_F(CheckpointUploadTest, AnErrorBeforeTheBytesAreReadEndsTheUploadWithThatError) {
  // Large enough that the client is still writing when the server answers.
  const std::string path = WriteFile("step-120.pt", 8 << 20);
  service_.Answer(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "disk full"),
                  /*after_metadata=*/true);
  absl::StatusOr<v1::Checkpoint> checkpoint =
      UploadCheckpointFile(*stub_, client_, Metadata(), path, UploadOptions());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("disk full"));
}

TEST_F(CheckpointUploadTest, AMissingFileIsNotFoundAndMakesNoCall) {
  absl::StatusOr<v1::Checkpoint> checkpoint =
      UploadCheckpointFile(*stub_, client_, Metadata(), dir_ + "/missing.pt", UploadOptions());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("missing.pt"));
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(CheckpointUploadTest, ChunksAboveTheContractsLimitAreRejected) {
  const std::string path = WriteFile("step-120.pt", 10);
  UploadOptions options;
  options.chunk_bytes = (1 << 20) + 1;
  absl::StatusOr<v1::Checkpoint> checkpoint =
      UploadCheckpointFile(*stub_, client_, Metadata(), path, options);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("chunk_bytes"));
  options.chunk_bytes = 0;
  EXPECT_EQ(UploadCheckpointFile(*stub_, client_, Metadata(), path, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(service_.calls(), 0);
}

}  // namespace
}  // namespace clmae
