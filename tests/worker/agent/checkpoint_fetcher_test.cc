#include "worker/agent/checkpoint_fetcher.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"
#include "tests/worker/agent/fake_worker_control.h"

namespace clmae {
namespace {

using agent_testing::AgentTempDir;
using agent_testing::FakeServer;
using agent_testing::FakeWorkerControl;
using agent_testing::ReadFileOrEmpty;
using agent_testing::WaitUntil;
using ::testing::HasSubstr;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Sets the file's modification time `age` in the past (its last use).
void SetAge(const std::string& path, absl::Duration age) {
  const timespec t = absl::ToTimespec(absl::Now() - age);
  const timespec times[2] = {t, t};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

class CheckpointFetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
    service_.fetch_chunk_bytes = 1000;
    cache_ = dir_.File("cache");
  }
  void TearDown() override {
    service_.HoldFetches(false);
    fetcher_.reset();
  }

  void Make(int max_files = 4) {
    CheckpointFetcherOptions options;
    options.cache_dir = cache_;
    options.max_files = max_files;
    options.client.token = "worker-token";
    ClientOptions client;
    client.address = server_->address();
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeClientChannel(client);
    ASSERT_TRUE(channel.ok()) << channel.status();
    options.channel = *channel;
    absl::StatusOr<std::unique_ptr<CheckpointFetcher>> made =
        CheckpointFetcher::Create(std::move(options));
    ASSERT_TRUE(made.ok()) << made.status();
    fetcher_ = *std::move(made);
  }

  // A checkpoint of job-1 the fake coordinator serves; returns its bytes.
  std::string Serve(const std::string& id, size_t size) {
    std::string bytes(size, '\0');
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 31 + id.size()) & 0xff);
    bytes.replace(0, std::min(id.size(), size), id.substr(0, size));
    v1::Checkpoint record;
    record.set_id(id);
    record.mutable_metadata()->set_job_id("job-1");
    record.mutable_metadata()->set_kind(v1::CHECKPOINT_KIND_FULL);
    record.mutable_metadata()->set_size_bytes(static_cast<int64_t>(bytes.size()));
    record.mutable_metadata()->set_sha256(Sha256Hex(bytes));
    service_.AddCheckpoint(record, bytes);
    return bytes;
  }

  // Puts `bytes` in the cache under their digest, as a trainer's link would.
  std::string Cache(const std::string& bytes) {
    std::filesystem::create_directories(cache_);
    const std::string path = cache_ + "/" + Sha256Hex(bytes);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  absl::StatusOr<std::string> Ensure(const std::string& id, const std::string& bytes) {
    return fetcher_->Ensure("job-1", id, Sha256Hex(bytes), static_cast<int64_t>(bytes.size()));
  }

  AgentTempDir dir_;
  std::string cache_;
  FakeWorkerControl service_;
  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<CheckpointFetcher> fetcher_;
};

TEST_F(CheckpointFetcherTest, ACacheHitMakesNoCall) {
  const std::string bytes = "a checkpoint a trainer here uploaded";
  const std::string cached = Cache(bytes);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-1", bytes);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, cached);
  EXPECT_TRUE(service_.fetches().empty());
  EXPECT_EQ(fetcher_->fetches(), 0);
}

TEST_F(CheckpointFetcherTest, AMissIsFetchedVerifiedAndThenServedFromTheCache) {
  const std::string bytes = Serve("ck-2", 4500);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-2", bytes);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, cache_ + "/" + Sha256Hex(bytes));
  EXPECT_EQ(ReadFileOrEmpty(*path), bytes);
  const std::vector<v1::FetchCheckpointRequest> fetches = service_.fetches();
  ASSERT_EQ(fetches.size(), 1u);
  EXPECT_EQ(fetches[0].job_id(), "job-1");
  EXPECT_EQ(fetches[0].id(), "ck-2");
  EXPECT_EQ(fetches[0].offset(), 0);
  EXPECT_THAT(service_.tokens(), ::testing::Contains("Bearer worker-token"));

  absl::StatusOr<std::string> again = Ensure("ck-2", bytes);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *path);
  EXPECT_EQ(service_.fetches().size(), 1u) << "the second time is a cache hit";
}

TEST_F(CheckpointFetcherTest, ACheckpointWithAnotherDigestFailsAndLeavesNothing) {
  Serve("ck-3", 3000);
  Make();
  const std::string expected = Sha256Hex("the bytes the assignment names");
  absl::StatusOr<std::string> path = fetcher_->Ensure("job-1", "ck-3", expected, 3000);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(path.status().message(), HasSubstr(expected));
  EXPECT_THAT(path.status().message(), HasSubstr("ck-3"));
  EXPECT_FALSE(Exists(cache_ + "/" + expected));
  EXPECT_FALSE(Exists(cache_ + "/" + expected + ".part"));
  EXPECT_FALSE(Exists(cache_ + "/" + expected + ".part.meta"));
}

TEST_F(CheckpointFetcherTest, AnUnknownCheckpointKeepsTheCoordinatorsCode) {
  Make();
  absl::StatusOr<std::string> path = fetcher_->Ensure("job-1", "ck-gone", Sha256Hex("whatever"), 8);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(path.status().message(), HasSubstr("ck-gone"));
  EXPECT_FALSE(IsCheckpointRefused(path.status()));
}

TEST_F(CheckpointFetcherTest, ACheckpointThatFailedVerificationOnTheCoordinatorIsRefused) {
  const std::string bytes = Serve("ck-8", 5000);
  service_.FailFetches("ck-8",
                       grpc::Status(grpc::StatusCode::DATA_LOSS,
                                    "checkpoint ck-8 failed verification on the coordinator: "
                                    "...; it has been quarantined"),
                       4000);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-8", bytes);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(IsCheckpointRefused(path.status()));
  EXPECT_THAT(path.status().message(), HasSubstr("failed verification on the coordinator"));
  EXPECT_EQ(service_.fetches().size(), 1u) << "the coordinator's verdict is not retried";
  const std::string file = cache_ + "/" + Sha256Hex(bytes);
  EXPECT_FALSE(Exists(file));
  EXPECT_FALSE(Exists(file + ".part"));
  EXPECT_FALSE(Exists(file + ".part.meta"));
}

TEST_F(CheckpointFetcherTest, AQuarantinedCheckpointIsRefused) {
  const std::string bytes = Serve("ck-9", 5000);
  service_.FailFetches("ck-9",
                       grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "checkpoint ck-9 of job \"job-1\" was quarantined at ..."),
                       -1);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-9", bytes);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsCheckpointRefused(path.status()));
  EXPECT_THAT(path.status().message(), HasSubstr("quarantined"));
  EXPECT_EQ(service_.fetches().size(), 1u);
}

TEST_F(CheckpointFetcherTest, BytesDamagedOnTheWayAreFetchedOnceMoreFromTheStart) {
  const std::string bytes = Serve("ck-10", 5000);
  service_.DamageFetches(1);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-10", bytes);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(ReadFileOrEmpty(*path), bytes);
  const std::vector<v1::FetchCheckpointRequest> fetches = service_.fetches();
  ASSERT_EQ(fetches.size(), 2u);
  EXPECT_EQ(fetches[1].offset(), 0);
}

TEST_F(CheckpointFetcherTest, BytesDamagedOnTheWayTwiceFailWithoutBlamingTheCoordinator) {
  const std::string bytes = Serve("ck-11", 5000);
  service_.DamageFetches(2);
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-11", bytes);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(IsCheckpointRefused(path.status()));
  EXPECT_THAT(path.status().message(), HasSubstr(Sha256Hex(bytes)));
  EXPECT_EQ(service_.fetches().size(), 2u);
  EXPECT_FALSE(Exists(cache_ + "/" + Sha256Hex(bytes)));
}

TEST_F(CheckpointFetcherTest, ACachedFileOfTheWrongSizeIsFetchedAgain) {
  const std::string bytes = Serve("ck-4", 2000);
  std::filesystem::create_directories(cache_);
  std::ofstream(cache_ + "/" + Sha256Hex(bytes)) << "truncated";
  Make();
  absl::StatusOr<std::string> path = Ensure("ck-4", bytes);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(ReadFileOrEmpty(*path), bytes);
  EXPECT_EQ(service_.fetches().size(), 1u);
}

TEST_F(CheckpointFetcherTest, BadDigestsAreRejectedBeforeAnyFileIsNamedAfterThem) {
  Make();
  absl::StatusOr<std::string> path = fetcher_->Ensure("job-1", "ck-1", "../../etc/passwd", 10);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(path.status().message(), HasSubstr("resume_sha256"));
  EXPECT_TRUE(service_.fetches().empty());
}

TEST_F(CheckpointFetcherTest, TheLeastRecentlyUsedCheckpointsAreEvicted) {
  const std::string oldest = Cache("oldest checkpoint");
  const std::string middle = Cache("middle checkpoint");
  const std::string newest = Cache("newest checkpoint");
  SetAge(oldest, absl::Seconds(30));
  SetAge(middle, absl::Seconds(20));
  SetAge(newest, absl::Seconds(10));
  Make(/*max_files=*/2);
  // Using the oldest makes it the most recent: the middle one goes.
  ASSERT_TRUE(Ensure("ck-old", "oldest checkpoint").ok());
  EXPECT_TRUE(Exists(oldest));
  EXPECT_FALSE(Exists(middle));
  EXPECT_TRUE(Exists(newest));
  // A fetched one pushes out the least recently used of the others.
  const std::string bytes = Serve("ck-5", 1500);
  absl::StatusOr<std::string> fetched = Ensure("ck-5", bytes);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_TRUE(Exists(*fetched));
  EXPECT_TRUE(Exists(oldest));
  EXPECT_FALSE(Exists(newest));
}

TEST_F(CheckpointFetcherTest, ConcurrentCallersForOneDigestShareOneFetch) {
  const std::string bytes = Serve("ck-6", 5000);
  Make();
  service_.HoldFetches(true);
  absl::StatusOr<std::string> first, second;
  std::thread a([&] { first = Ensure("ck-6", bytes); });
  ASSERT_TRUE(WaitUntil([&] { return service_.fetches().size() == 1; }));
  std::thread b([&] { second = Ensure("ck-6", bytes); });
  absl::SleepFor(absl::Milliseconds(100));  // lets `b` reach the wait (not measured)
  service_.HoldFetches(false);
  a.join();
  b.join();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(service_.fetches().size(), 1u);
  EXPECT_EQ(fetcher_->fetches(), 1);
}

TEST_F(CheckpointFetcherTest, ShutdownCancelsAFetchInFlight) {
  const std::string bytes = Serve("ck-7", 5000);
  Make();
  service_.HoldFetches(true);
  absl::StatusOr<std::string> result;
  std::thread a([&] { result = Ensure("ck-7", bytes); });
  ASSERT_TRUE(WaitUntil([&] { return service_.fetches().size() == 1; }));
  fetcher_->Shutdown();
  a.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Ensure("ck-7", bytes).status().code(), absl::StatusCode::kCancelled);
}

TEST_F(CheckpointFetcherTest, CreateRejectsBadOptions) {
  CheckpointFetcherOptions options;
  options.cache_dir = cache_;
  EXPECT_EQ(CheckpointFetcher::Create(options).status().code(), absl::StatusCode::kInvalidArgument)
      << "no channel";
}

}  // namespace
}  // namespace clmae
