// DownloadCheckpointToFile against a scripted, in-process Coordinator:
// whole downloads, resumes (in one call and across calls), a stale .part of
// another checkpoint, digest mismatches, truncated and broken streams, and
// streams that break the protocol.

#include "services/checkpoint_download.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "clmae/v1/coordinator.grpc.pb.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"

namespace clmae {
namespace {

using ::clmae::testing::ReadFileOrEmpty;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xFF);
  return bytes;
}

v1::Checkpoint Record(const std::string& id, const std::string& bytes) {
  v1::Checkpoint record;
  record.set_id(id);
  record.mutable_metadata()->set_job_id("j-1");
  record.mutable_metadata()->set_step(400);
  record.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
  record.mutable_metadata()->set_size_bytes(static_cast<int64_t>(bytes.size()));
  record.mutable_metadata()->set_sha256(Sha256Hex(bytes));
  return record;
}

using ProgressPoint = std::pair<int64_t, int64_t>;
ProgressPoint Progress(int64_t done, size_t total) { return {done, static_cast<int64_t>(total)}; }

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Serves one scripted stream per call (the last script repeats) and records
// the offsets asked for and the metadata each call carried.
class FakeDownloadServer final : public v1::Coordinator::Service {
 public:
  struct Script {
    v1::Checkpoint record;
    std::string bytes;
    bool send_record = true;
    // With stop_at >= 0 the stream sends the bytes before it, then ends
    // with `end`.
    int64_t stop_at = -1;
    grpc::Status end = grpc::Status::OK;
    size_t chunk = 256 << 10;
  };

  void SetScripts(std::vector<Script> scripts) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_ = std::move(scripts);
  }
  std::vector<int64_t> offsets() const {
    std::lock_guard<std::mutex> lock(mu_);
    return offsets_;
  }
  std::vector<std::string> tokens() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }

  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    Script script;
    {
      std::lock_guard<std::mutex> lock(mu_);
      offsets_.push_back(request->offset());
      auto it = context->client_metadata().find("x-token");
      tokens_.push_back(it == context->client_metadata().end()
                            ? ""
                            : std::string(it->second.data(), it->second.size()));
      if (scripts_.empty()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such checkpoint");
      script = scripts_[std::min(offsets_.size(), scripts_.size()) - 1];
    }
    const int64_t size = static_cast<int64_t>(script.bytes.size());
    if (request->offset() < 0 || request->offset() > size) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "offset past the end");
    }
    v1::DownloadCheckpointResponse message;
    if (script.send_record) {
      *message.mutable_checkpoint() = script.record;
      if (!writer->Write(message)) return grpc::Status::CANCELLED;
    }
    const int64_t end = script.stop_at >= 0 ? std::min(script.stop_at, size) : size;
    for (int64_t at = request->offset(); at < end;) {
      const int64_t n = std::min<int64_t>(script.chunk, end - at);
      message.set_data(script.bytes.substr(at, n));
      if (!writer->Write(message)) return grpc::Status::CANCELLED;
      at += n;
    }
    return script.stop_at >= 0 ? script.end : grpc::Status::OK;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Script> scripts_;
  std::vector<int64_t> offsets_;
  std::vector<std::string> tokens_;
};

class CheckpointDownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&server_);
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);
    stub_ = v1::Coordinator::NewStub(grpc_server_->InProcessChannel(grpc::ChannelArguments()));
    std::string dir = ::testing::TempDir() + "/clmae_download_XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    path_ = dir_ + "/checkpoint.pt";
    options_.initial_backoff = absl::Milliseconds(1);
    options_.progress = [this](int64_t done, int64_t total) {
      progress_.emplace_back(done, total);
    };
  }

  void TearDown() override {
    grpc_server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<v1::Checkpoint> Download() {
    progress_.clear();
    const OpenDownloadStream open = [this](grpc::ClientContext* context, int64_t offset) {
      v1::DownloadCheckpointRequest request;
      request.set_job_id("j-1");
      request.set_latest(true);
      request.set_offset(offset);
      return stub_->DownloadCheckpoint(context, request);
    };
    return DownloadCheckpointToFile(open, path_, options_);
  }

  // A download of `bytes` that stops after `stop_at` of them with an error
  // that is not retried, leaving the .part behind.
  void Interrupt(const v1::Checkpoint& record, const std::string& bytes, int64_t stop_at) {
    server_.SetScripts({{.record = record,
                         .bytes = bytes,
                         .stop_at = stop_at,
                         .end = grpc::Status(grpc::StatusCode::INTERNAL, "disk went away")}});
    absl::StatusOr<v1::Checkpoint> result = Download();
    ASSERT_EQ(result.status().code(), absl::StatusCode::kInternal) << result.status();
    ASSERT_EQ(ReadFileOrEmpty(DownloadPartPath(path_)), bytes.substr(0, stop_at));
    ASSERT_FALSE(Exists(path_));
  }

  FakeDownloadServer server_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::string dir_;
  std::string path_;
  DownloadOptions options_;
  std::vector<ProgressPoint> progress_;
};

TEST_F(CheckpointDownloadTest, FullDownloadEqualsTheBytes) {
  const std::string bytes = RandomBytes((3 << 20) + 123, 1);
  const v1::Checkpoint record = Record("ck-1", bytes);
  server_.SetScripts({{.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->id(), "ck-1");
  EXPECT_EQ(result->metadata().step(), 400);
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(DownloadSidecarPath(path_)));
  EXPECT_THAT(server_.offsets(), ElementsAre(0));
  ASSERT_FALSE(progress_.empty());
  EXPECT_EQ(progress_.front(), Progress(0, bytes.size()));
  EXPECT_EQ(progress_.back(), Progress(bytes.size(), bytes.size()));
}

TEST_F(CheckpointDownloadTest, EmptyCheckpoint) {
  server_.SetScripts({{.record = Record("ck-0", ""), .bytes = ""}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(Exists(path_));
  EXPECT_EQ(ReadFileOrEmpty(path_), "");
}

TEST_F(CheckpointDownloadTest, ResumesFromThePartOfTheSameCheckpoint) {
  const std::string bytes = RandomBytes((2 << 20) + 77, 2);
  const v1::Checkpoint record = Record("ck-1", bytes);
  Interrupt(record, bytes, 1 << 20);
  ASSERT_TRUE(Exists(DownloadSidecarPath(path_)));

  server_.SetScripts({{.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 1 << 20));
  EXPECT_EQ(progress_.front(), Progress(1 << 20, bytes.size()));
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(DownloadSidecarPath(path_)));
}

TEST_F(CheckpointDownloadTest, ACompletePartAsksOnlyForTheLastByte) {
  const std::string bytes = RandomBytes(5000, 3);
  const v1::Checkpoint record = Record("ck-1", bytes);
  // Every byte arrived, then the stream failed before it ended.
  Interrupt(record, bytes.substr(0, 4999) + "x", 5000);
  server_.SetScripts({{.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 4999));
}

TEST_F(CheckpointDownloadTest, WithoutResumeStartsOver) {
  const std::string bytes = RandomBytes(300000, 4);
  const v1::Checkpoint record = Record("ck-1", bytes);
  Interrupt(record, bytes, 100000);
  options_.resume = false;
  server_.SetScripts({{.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 0));
}

TEST_F(CheckpointDownloadTest, APartOfAnotherCheckpointIsRestarted) {
  const std::string old_bytes = RandomBytes(600000, 5);
  Interrupt(Record("ck-old", old_bytes), old_bytes, 400000);

  const std::string bytes = RandomBytes(500000, 6);
  server_.SetScripts({{.record = Record("ck-new", bytes), .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->id(), "ck-new");
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  // It asked from the stale part's end, saw another checkpoint, started over.
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 400000, 0));
}

TEST_F(CheckpointDownloadTest, APartWithoutSidecarIsNotTrusted) {
  const std::string bytes = RandomBytes(100000, 7);
  {
    std::ofstream part(DownloadPartPath(path_), std::ios::binary);
    part << std::string(50000, 'z');
  }
  server_.SetScripts({{.record = Record("ck-1", bytes), .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_THAT(server_.offsets(), ElementsAre(0));
}

TEST_F(CheckpointDownloadTest, DigestMismatchIsDataLossAndLeavesNoFile) {
  const std::string bytes = RandomBytes(200000, 8);
  v1::Checkpoint record = Record("ck-1", bytes);
  const std::string expected = Sha256Hex("something else");
  record.mutable_metadata()->set_sha256(expected);
  server_.SetScripts({{.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(expected));
  EXPECT_THAT(result.status().message(), HasSubstr(Sha256Hex(bytes)));
  EXPECT_FALSE(Exists(path_));
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(DownloadSidecarPath(path_)));
}

TEST_F(CheckpointDownloadTest, ATruncatedStreamIsRetriedThenDataLoss) {
  const std::string bytes = RandomBytes(400000, 9);
  options_.attempts = 3;
  // Ends "OK" at byte 150000 every time.
  server_.SetScripts({{.record = Record("ck-1", bytes), .bytes = bytes, .stop_at = 150000}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("ended at byte 150000 of 400000"));
  // Three tries counted from the last one that brought bytes (the first).
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 150000, 150000));
  EXPECT_FALSE(Exists(path_));
  // What arrived stays for a later resume.
  EXPECT_EQ(ReadFileOrEmpty(DownloadPartPath(path_)), bytes.substr(0, 150000));
}

TEST_F(CheckpointDownloadTest, AStreamBrokenMidwayResumesOnRetry) {
  const std::string bytes = RandomBytes((2 << 20) + 5, 10);
  const v1::Checkpoint record = Record("ck-1", bytes);
  const grpc::Status broken(grpc::StatusCode::UNAVAILABLE, "connection reset");
  server_.SetScripts({{.record = record, .bytes = bytes, .stop_at = 700000, .end = broken},
                      {.record = record, .bytes = bytes, .stop_at = 1500000, .end = broken},
                      {.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFileOrEmpty(path_), bytes);
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 700000, 1500000));
}

TEST_F(CheckpointDownloadTest, UnavailableWithoutProgressGivesUpAfterTheAttempts) {
  options_.attempts = 2;
  const std::string bytes = RandomBytes(1000, 11);
  server_.SetScripts(
      {{.record = Record("ck-1", bytes),
        .bytes = bytes,
        .stop_at = 0,
        .end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator restarting")}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_THAT(server_.offsets(), ElementsAre(0, 0));
}

TEST_F(CheckpointDownloadTest, ServerErrorsKeepTheirCodeAndAreNotRetried) {
  server_.SetScripts({});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("no such checkpoint"));
  EXPECT_THAT(server_.offsets(), ElementsAre(0));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointDownloadTest, AStreamWithoutTheRecordIsDataLoss) {
  const std::string bytes = RandomBytes(1000, 12);
  server_.SetScripts({{.record = Record("ck-1", bytes), .bytes = bytes, .send_record = false}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("record"));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointDownloadTest, AChunkOverOneMebibyteIsDataLoss) {
  const std::string bytes = RandomBytes((1 << 20) + 1, 13);
  server_.SetScripts({{.record = Record("ck-1", bytes), .bytes = bytes, .chunk = (1 << 20) + 1}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("at most 1 MiB"));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointDownloadTest, MoreBytesThanTheSizeIsDataLoss) {
  const std::string bytes = RandomBytes(10000, 14);
  v1::Checkpoint record = Record("ck-1", bytes.substr(0, 9000));
  server_.SetScripts({{.record = record, .bytes = bytes, .chunk = 4000}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("more than the 9000 bytes"));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointDownloadTest, EveryTryIsPrepared) {
  const std::string bytes = RandomBytes(300000, 15);
  const v1::Checkpoint record = Record("ck-1", bytes);
  int prepared = 0;
  options_.prepare_context = [&prepared](grpc::ClientContext& context) {
    context.AddMetadata("x-token", "t" + std::to_string(++prepared));
  };
  server_.SetScripts({{.record = record,
                       .bytes = bytes,
                       .stop_at = 1000,
                       .end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset")},
                      {.record = record, .bytes = bytes}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(server_.tokens(), ElementsAre("t1", "t2"));
}

TEST_F(CheckpointDownloadTest, StartedNamesTheCheckpointAndWhereEachTryResumes) {
  const std::string bytes = RandomBytes(300000, 16);
  const v1::Checkpoint record = Record("ck-7", bytes);
  std::vector<std::pair<std::string, int64_t>> starts;
  options_.started = [&starts](const v1::Checkpoint& checkpoint, int64_t offset) {
    starts.emplace_back(checkpoint.id(), offset);
  };
  server_.SetScripts({{.record = record,
                       .bytes = bytes,
                       .stop_at = 1000,
                       .end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset")},
                      {.record = record, .bytes = bytes}});
  ASSERT_TRUE(Download().ok());
  EXPECT_THAT(starts, ElementsAre(std::make_pair(std::string("ck-7"), int64_t{0}),
                                  std::make_pair(std::string("ck-7"), int64_t{1000})));
}

TEST_F(CheckpointDownloadTest, AMissingDirectoryNamesThePath) {
  path_ = dir_ + "/no/such/dir/checkpoint.pt";
  server_.SetScripts({{.record = Record("ck-1", "abc"), .bytes = "abc"}});
  absl::StatusOr<v1::Checkpoint> result = Download();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(DownloadPartPath(path_)));
  EXPECT_THAT(server_.offsets(), ::testing::IsEmpty());
}

TEST_F(CheckpointDownloadTest, AFailureBeforeAnyByteLeavesNoPartToResume) {
  // Refused before the record: nothing was ever written.
  server_.SetScripts({});
  EXPECT_EQ(Download().status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(DownloadSidecarPath(path_)));
  // The record came (the sidecar was written), then an error before any byte.
  const std::string bytes = RandomBytes(5000, 17);
  server_.SetScripts({{.record = Record("ck-1", bytes),
                       .bytes = bytes,
                       .stop_at = 0,
                       .end = grpc::Status(grpc::StatusCode::DATA_LOSS, "failed verification")}});
  EXPECT_EQ(Download().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(DownloadSidecarPath(path_)));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointDownloadTest, AFailureAfterSomeBytesKeepsThePartToResume) {
  const std::string bytes = RandomBytes(300000, 18);
  const v1::Checkpoint record = Record("ck-1", bytes);
  server_.SetScripts({{.record = record,
                       .bytes = bytes,
                       .stop_at = 1000,
                       .end = grpc::Status(grpc::StatusCode::DATA_LOSS, "failed verification")}});
  EXPECT_EQ(Download().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadFileOrEmpty(DownloadPartPath(path_)), bytes.substr(0, 1000));
  EXPECT_TRUE(Exists(DownloadSidecarPath(path_)));
  // A later call that gets no further byte keeps what the earlier one had.
  server_.SetScripts({});
  EXPECT_EQ(Download().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadFileOrEmpty(DownloadPartPath(path_)), bytes.substr(0, 1000));
  EXPECT_TRUE(Exists(DownloadSidecarPath(path_)));
}

}  // namespace
}  // namespace clmae
