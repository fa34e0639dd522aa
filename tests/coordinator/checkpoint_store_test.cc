#include "coordinator/checkpoint_store.h"

#include <errno.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/sha256.h"
#include "coordinator/sqlite_db.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// Real writes, with a free-space figure and a disk that fills up on demand.
class FakeIo : public StorageIo {
 public:
  absl::StatusOr<int64_t> FreeBytes(const std::string&) override { return free_bytes.load(); }
  int WriteAll(int fd, absl::string_view bytes) override {
    const int64_t before = written.fetch_add(static_cast<int64_t>(bytes.size()));
    if (before + static_cast<int64_t>(bytes.size()) > full_after) return ENOSPC;
    return StorageIo::WriteAll(fd, bytes);
  }
  std::atomic<int64_t> free_bytes{int64_t{1} << 40};
  std::atomic<int64_t> full_after{std::numeric_limits<int64_t>::max()};
  std::atomic<int64_t> written{0};
};

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_checkpoints_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    options_.dir = dir_ + "/checkpoints";
    options_.io = io_;
    options_.clock = [this] { return t0_ + absl::Hours(1); };
    options_.log = [this](absl::string_view line) {
      absl::MutexLock lock(&log_mu_);
      log_.emplace_back(line);
    };
    store_ = OpenStore();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<CheckpointStore> OpenStore() {
    auto store = CheckpointStore::Open(options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  static std::string RandomBytes(size_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(gen());
    return out;
  }
  static v1::CheckpointMetadata Meta(const std::string& job, v1::CheckpointKind kind, int64_t step,
                                     absl::string_view bytes, bool final = false) {
    v1::CheckpointMetadata m;
    m.set_job_id(job);
    m.set_attempt(1);
    m.set_kind(kind);
    m.set_step(step);
    m.set_final(final);
    m.set_loss_mae(0.25);
    m.set_size_bytes(static_cast<int64_t>(bytes.size()));
    m.set_sha256(Sha256Hex(bytes));
    return m;
  }
  // Uploads `bytes` in chunks of `chunk` and commits.
  absl::StatusOr<v1::Checkpoint> Put(const v1::CheckpointMetadata& meta, absl::string_view bytes,
                                     RetentionPolicy policy = {.keep_last = 100},
                                     size_t chunk = 100003) {
    auto upload = store_->BeginUpload(meta);
    if (!upload.ok()) return upload.status();
    for (size_t at = 0; at < bytes.size(); at += chunk) {
      absl::Status s = (*upload)->Append(bytes.substr(at, chunk));
      if (!s.ok()) return s;
    }
    return store_->Commit(std::move(*upload), policy, t0_);
  }
  absl::StatusOr<v1::Checkpoint> Put(const std::string& job, int64_t step, absl::string_view bytes,
                                     RetentionPolicy policy = {.keep_last = 100},
                                     bool final = false) {
    return Put(Meta(job, v1::CHECKPOINT_KIND_FULL, step, bytes, final), bytes, policy);
  }
  std::string ReadAll(CheckpointStore::Reader& reader) {
    std::string out;
    while (true) {
      auto chunk = reader.Read(1 << 20);
      EXPECT_TRUE(chunk.ok()) << chunk.status();
      if (!chunk.ok() || chunk->empty()) return out;
      out += *chunk;
    }
  }
  std::string ReadAll(const v1::Checkpoint& checkpoint, int64_t offset = 0) {
    auto reader = store_->OpenReader(checkpoint, offset);
    EXPECT_TRUE(reader.ok()) << reader.status();
    return reader.ok() ? ReadAll(**reader) : "";
  }
  std::vector<std::string> Files(const std::string& sub) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(options_.dir + "/" + sub)) {
      if (e.is_regular_file()) out.push_back(e.path().filename().string());
    }
    return out;
  }
  std::vector<int64_t> Steps(const std::string& job, v1::CheckpointKind kind) {
    std::vector<int64_t> steps;
    auto list = store_->List(job, kind);
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) {
      for (const auto& c : *list) steps.push_back(c.metadata().step());
    }
    return steps;
  }
  // Overwrites the byte at `at` of the checkpoint's blob on disk.
  void FlipByte(const v1::Checkpoint& checkpoint, int64_t at) {
    const std::string& digest = checkpoint.metadata().sha256();
    const std::string path = options_.dir + "/blobs/" + digest.substr(0, 2) + "/" + digest;
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << path;
    file.seekg(at);
    const char c = static_cast<char>(file.get());
    file.seekp(at);
    file.put(static_cast<char>(c ^ 0x01));
  }
  // Reads until the end or an error: the bytes returned, and the error.
  std::pair<std::string, absl::Status> ReadUntilError(const v1::Checkpoint& checkpoint,
                                                      int64_t offset = 0) {
    auto reader = store_->OpenReader(checkpoint, offset);
    if (!reader.ok()) return {"", reader.status()};
    std::string out;
    while (true) {
      absl::StatusOr<std::string> chunk = (*reader)->Read(1 << 20);
      if (!chunk.ok()) return {out, chunk.status()};
      if (chunk->empty()) return {out, absl::OkStatus()};
      out += *chunk;
    }
  }
  std::vector<std::string> LogLines() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }

  // Every outcome of a failed upload: nothing recorded, nothing left on disk.
  void ExpectNothingStored(const std::string& job) {
    EXPECT_THAT(Steps(job, v1::CHECKPOINT_KIND_UNSPECIFIED), IsEmpty());
    EXPECT_THAT(Files("tmp"), IsEmpty());
    EXPECT_THAT(Files("blobs"), IsEmpty());
    EXPECT_EQ(store_->stored_bytes(), 0);
  }

  std::string dir_;
  std::shared_ptr<FakeIo> io_ = std::make_shared<FakeIo>();
  CheckpointStoreOptions options_;
  std::unique_ptr<CheckpointStore> store_;
  const absl::Time t0_ = absl::FromUnixSeconds(1700000000);
  absl::Mutex log_mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(log_mu_);
};

TEST_F(CheckpointStoreTest, BytesReadBackEqualBytesUploaded) {
  const std::string bytes = RandomBytes((3 << 20) + 17, 1);
  const v1::CheckpointMetadata meta = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 100, bytes);
  auto checkpoint = Put(meta, bytes);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(IsCheckpointId(checkpoint->id())) << checkpoint->id();
  EXPECT_EQ(checkpoint->metadata().SerializeAsString(), meta.SerializeAsString());
  EXPECT_EQ(checkpoint->create_time().seconds(), 1700000000);
  EXPECT_EQ(ReadAll(*checkpoint), bytes);
  EXPECT_EQ(store_->stored_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_THAT(Files("blobs"), ElementsAre(meta.sha256()));
  EXPECT_THAT(Files("tmp"), IsEmpty());
  auto got = store_->Get("job-a", checkpoint->id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->SerializeAsString(), checkpoint->SerializeAsString());
}

TEST_F(CheckpointStoreTest, ReadsFromAnOffset) {
  const std::string bytes = RandomBytes(200000, 2);
  auto checkpoint = Put("job-a", 1, bytes);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(ReadAll(*checkpoint, 12345), bytes.substr(12345));
  EXPECT_EQ(ReadAll(*checkpoint, 200000), "");
  for (int64_t bad : {int64_t{-1}, int64_t{200001}}) {
    EXPECT_EQ(store_->OpenReader(*checkpoint, bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  auto reader = store_->OpenReader(*checkpoint, 7);
  ASSERT_TRUE(reader.ok());
  auto first = (*reader)->Read(10);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, bytes.substr(7, 10));
}

TEST_F(CheckpointStoreTest, Sha256MismatchIsRejectedAndNotRecorded) {
  const std::string bytes = RandomBytes(5000, 3);
  v1::CheckpointMetadata meta = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes);
  const std::string declared = Sha256Hex("something else");
  meta.set_sha256(declared);
  auto checkpoint = Put(meta, bytes);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr(declared));
  EXPECT_THAT(checkpoint.status().message(), HasSubstr(Sha256Hex(bytes)));
  ExpectNothingStored("job-a");
}

TEST_F(CheckpointStoreTest, TruncatedUploadIsRejected) {
  const std::string bytes = RandomBytes(100, 4);
  auto checkpoint = Put(Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes), bytes.substr(0, 99));
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("received 99 of 100 bytes"));
  ExpectNothingStored("job-a");
}

TEST_F(CheckpointStoreTest, DestroyingAnUploadRemovesItsTempFile) {
  const std::string bytes = RandomBytes(1000, 5);
  auto upload = store_->BeginUpload(Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes));
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append(bytes.substr(0, 500)).ok());
  EXPECT_EQ((*upload)->received_bytes(), 500);
  EXPECT_THAT(Files("tmp"), SizeIs(1));
  upload->reset();
  ExpectNothingStored("job-a");
}

TEST_F(CheckpointStoreTest, MoreBytesThanDeclaredAreRejected) {
  const std::string bytes = RandomBytes(1000, 6);
  auto upload = store_->BeginUpload(Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes));
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append(bytes).ok());
  const absl::Status extra = (*upload)->Append("x");
  EXPECT_EQ(extra.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(extra.message(), HasSubstr("size_bytes 1000"));
  EXPECT_THAT(Files("tmp"), IsEmpty());  // removed at once, not at the end of the stream
  EXPECT_FALSE(store_->Commit(std::move(*upload), {}, t0_).ok());
  ExpectNothingStored("job-a");
}

TEST_F(CheckpointStoreTest, TooLargeIsRefusedBeforeWriting) {
  options_.max_checkpoint_bytes = 1000;
  store_ = OpenStore();
  const std::string bytes = RandomBytes(1001, 7);
  auto upload = store_->BeginUpload(Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes));
  EXPECT_EQ(upload.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(upload.status().message(), HasSubstr("1000"));
  ExpectNothingStored("job-a");
  EXPECT_TRUE(Put("job-a", 1, bytes.substr(0, 1000)).ok());
}

TEST_F(CheckpointStoreTest, FullDiskAtBeginIsRefused) {
  io_->free_bytes = int64_t{300} << 20;  // min_free_bytes is 256 MiB
  v1::CheckpointMetadata meta = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, "");
  meta.set_size_bytes(int64_t{50} << 20);
  auto refused = store_->BeginUpload(meta);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat(int64_t{300} << 20, " bytes free")));
  ExpectNothingStored("job-a");

  meta.set_size_bytes(int64_t{40} << 20);
  auto first = store_->BeginUpload(meta);
  ASSERT_TRUE(first.ok()) << first.status();
  // The first upload's declared bytes are promised: a second does not fit.
  EXPECT_EQ(store_->BeginUpload(meta).status().code(), absl::StatusCode::kResourceExhausted);
  first->reset();
  EXPECT_TRUE(store_->BeginUpload(meta).ok());
}

TEST_F(CheckpointStoreTest, FullDiskMidWriteIsResourceExhausted) {
  io_->full_after = 300000;
  const std::string bytes = RandomBytes(1 << 20, 8);
  auto upload = store_->BeginUpload(Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes));
  ASSERT_TRUE(upload.ok()) << upload.status();
  absl::Status status;
  for (size_t at = 0; at < bytes.size() && status.ok(); at += 65536) {
    status = (*upload)->Append(bytes.substr(at, 65536));
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(Files("tmp"), IsEmpty());  // removed at once
  EXPECT_EQ((*upload)->Append("x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->Commit(std::move(*upload), {}, t0_).status().code(),
            absl::StatusCode::kResourceExhausted);
  ExpectNothingStored("job-a");
}

TEST_F(CheckpointStoreTest, InvalidMetadataNamesTheField) {
  const std::string bytes = "abc";
  const auto expect_bad = [&](const v1::CheckpointMetadata& m, const std::string& field) {
    auto upload = store_->BeginUpload(m);
    EXPECT_EQ(upload.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(upload.status().message(), HasSubstr(field));
  };
  v1::CheckpointMetadata m = Meta("", v1::CHECKPOINT_KIND_FULL, 1, bytes);
  expect_bad(m, "job_id");
  m = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes);
  m.set_attempt(0);
  expect_bad(m, "attempt");
  expect_bad(Meta("job-a", v1::CHECKPOINT_KIND_UNSPECIFIED, 1, bytes), "kind");
  expect_bad(Meta("job-a", v1::CHECKPOINT_KIND_FULL, -1, bytes), "step");
  m = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes);
  m.set_size_bytes(-1);
  expect_bad(m, "size_bytes");
  m = Meta("job-a", v1::CHECKPOINT_KIND_FULL, 1, bytes);
  m.set_sha256(absl::AsciiStrToUpper(m.sha256()));
  expect_bad(m, "sha256");
  EXPECT_THAT(Files("tmp"), IsEmpty());
}

TEST_F(CheckpointStoreTest, RetentionKeepsLastKFinalAndEveryNth) {
  const RetentionPolicy policy{.keep_last = 2, .keep_every = 20};
  const std::string shared = RandomBytes(3000, 9);  // the bytes of steps 25 and 40
  std::map<int64_t, std::string> bytes;
  for (int64_t step = 5; step <= 45; step += 5) {
    bytes[step] = (step == 25 || step == 40) ? shared : RandomBytes(1000 + step, step);
    ASSERT_TRUE(Put("job-a", step, bytes[step], policy, /*final=*/step == 15).ok()) << step;
  }
  // Another kind of the same job is a separate series.
  const std::string weights = RandomBytes(500, 99);
  ASSERT_TRUE(Put(Meta("job-a", v1::CHECKPOINT_KIND_WEIGHTS, 5, weights), weights, policy).ok());

  // Last 2: 40, 45; every 20th: 20, 40; final: 15.
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(15, 20, 40, 45));
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_WEIGHTS), ElementsAre(5));
  std::set<std::string> expected = {Sha256Hex(weights)};
  int64_t expected_bytes = static_cast<int64_t>(weights.size());
  for (int64_t step : {15, 20, 40, 45}) {
    if (expected.insert(Sha256Hex(bytes[step])).second) {
      expected_bytes += static_cast<int64_t>(bytes[step].size());
    }
  }
  const std::vector<std::string> on_disk = Files("blobs");
  EXPECT_EQ(std::set<std::string>(on_disk.begin(), on_disk.end()), expected);
  EXPECT_EQ(store_->stored_bytes(), expected_bytes);
  auto kept = store_->AtStep("job-a", 40, v1::CHECKPOINT_KIND_FULL);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(ReadAll(*kept), shared);  // step 25 dropped, its identical blob stays for 40
}

TEST_F(CheckpointStoreTest, SameJobKindAndStepIsReplaced) {
  const std::string a = RandomBytes(1000, 10);
  const std::string b = RandomBytes(2000, 11);
  auto first = Put("job-a", 5, a);
  ASSERT_TRUE(first.ok());
  auto second = Put("job-a", 5, b);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(first->id(), second->id());
  auto list = store_->List("job-a", v1::CHECKPOINT_KIND_FULL);
  ASSERT_TRUE(list.ok());
  ASSERT_THAT(*list, SizeIs(1));
  EXPECT_EQ((*list)[0].id(), second->id());
  EXPECT_EQ(ReadAll((*list)[0]), b);
  EXPECT_EQ(store_->Get("job-a", first->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Files("blobs"), ElementsAre(Sha256Hex(b)));
  EXPECT_EQ(store_->stored_bytes(), 2000);
}

TEST_F(CheckpointStoreTest, ReopenKeepsIndexAndBlobsAndSweepsLeftovers) {
  const std::string a = RandomBytes(1000, 12);
  const std::string b = RandomBytes(2000, 13);
  auto first = Put("job-a", 1, a);
  auto second = Put(Meta("job-a", v1::CHECKPOINT_KIND_ENCODER, 2, b), b);
  ASSERT_TRUE(first.ok() && second.ok());
  store_.reset();
  // A crash between rename and record, and one mid-upload.
  const std::string orphan = Sha256Hex("orphan");
  fs::create_directories(options_.dir + "/blobs/" + orphan.substr(0, 2));
  std::ofstream(options_.dir + "/blobs/" + orphan.substr(0, 2) + "/" + orphan) << "orphan";
  std::ofstream(options_.dir + "/tmp/upload-stale") << "half";

  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  auto list = store_->List("job-a", v1::CHECKPOINT_KIND_UNSPECIFIED);
  ASSERT_TRUE(list.ok());
  ASSERT_THAT(*list, SizeIs(2));
  EXPECT_EQ((*list)[0].SerializeAsString(), first->SerializeAsString());
  EXPECT_EQ((*list)[1].SerializeAsString(), second->SerializeAsString());
  EXPECT_EQ(ReadAll((*list)[1]), b);
  const std::vector<std::string> on_disk = Files("blobs");
  EXPECT_EQ(std::set<std::string>(on_disk.begin(), on_disk.end()),
            std::set<std::string>({Sha256Hex(a), Sha256Hex(b)}));
  EXPECT_THAT(Files("tmp"), IsEmpty());
  EXPECT_EQ(store_->stored_bytes(), 3000);
}

TEST_F(CheckpointStoreTest, MalformedIdsAreInvalidArgument) {
  auto real = Put("job-a", 1, "bytes");
  ASSERT_TRUE(real.ok());
  const std::string long_id = "ck-" + std::string(1000, 'a');
  for (const std::string& id : {std::string("../../etc/passwd"), std::string(), long_id,
                                std::string("ck-AAAAAAAAAAAAAAAAAAAA")}) {
    const absl::Status status = store_->Get("job-a", id).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_LT(status.message().size(), 200u);
    v1::Checkpoint forged = *real;
    forged.set_id(id);
    EXPECT_EQ(store_->OpenReader(forged, 0).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(store_->Get("job-a", long_id).status().message(), Not(HasSubstr(long_id)));
  EXPECT_FALSE(IsCheckpointId("ck-abcdefghijklmnopqrs1"));  // '1' is not base32
  EXPECT_TRUE(IsCheckpointId("ck-abcdefghijklmnopqrs7"));
}

TEST_F(CheckpointStoreTest, UnknownIdsAndJobsAreNotFound) {
  auto real = Put("job-a", 10, "bytes");
  ASSERT_TRUE(real.ok());
  const auto code = [](const auto& result) { return result.status().code(); };
  EXPECT_EQ(code(store_->Get("job-a", "ck-aaaaaaaaaaaaaaaaaaaa")), absl::StatusCode::kNotFound);
  EXPECT_EQ(code(store_->Get("job-b", real->id())), absl::StatusCode::kNotFound);
  EXPECT_EQ(code(store_->Latest("job-b", v1::CHECKPOINT_KIND_FULL)), absl::StatusCode::kNotFound);
  EXPECT_EQ(code(store_->Latest("job-a", v1::CHECKPOINT_KIND_WEIGHTS)),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(code(store_->AtStep("job-a", 11, v1::CHECKPOINT_KIND_FULL)),
            absl::StatusCode::kNotFound);
  v1::Checkpoint other_job = *real;
  other_job.mutable_metadata()->set_job_id("job-b");
  EXPECT_EQ(code(store_->OpenReader(other_job, 0)), absl::StatusCode::kNotFound);
  EXPECT_THAT(Steps("job-b", v1::CHECKPOINT_KIND_UNSPECIFIED), IsEmpty());
}

TEST_F(CheckpointStoreTest, LatestAndAtStepPickByStepAndKind) {
  ASSERT_TRUE(Put("job-a", 10, "ten").ok());
  ASSERT_TRUE(Put("job-a", 30, "thirty").ok());
  ASSERT_TRUE(Put("job-a", 20, "twenty").ok());
  ASSERT_TRUE(Put(Meta("job-a", v1::CHECKPOINT_KIND_WEIGHTS, 20, "w"), "w").ok());
  auto latest = store_->Latest("job-a", v1::CHECKPOINT_KIND_FULL);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->metadata().step(), 30);
  auto weights = store_->Latest("job-a", v1::CHECKPOINT_KIND_WEIGHTS);
  ASSERT_TRUE(weights.ok());
  EXPECT_EQ(weights->metadata().step(), 20);
  auto at = store_->AtStep("job-a", 20, v1::CHECKPOINT_KIND_WEIGHTS);
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(ReadAll(*at), "w");
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_UNSPECIFIED), ElementsAre(10, 20, 20, 30));
  auto list = store_->List("job-a", v1::CHECKPOINT_KIND_UNSPECIFIED);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[1].metadata().kind(), v1::CHECKPOINT_KIND_FULL);
  EXPECT_EQ((*list)[2].metadata().kind(), v1::CHECKPOINT_KIND_WEIGHTS);
}

TEST_F(CheckpointStoreTest, ConcurrentUploadsAreAllCommitted) {
  constexpr int kThreads = 6;
  constexpr int kEach = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string bytes = RandomBytes(50000 + t * 1000 + i, t * 100 + i);
        // Two threads per job: commits of one job interleave.
        if (!Put("job-" + std::to_string(t / 2), t * kEach + i, bytes).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t total = 0;
  for (int job = 0; job < kThreads / 2; ++job) {
    auto list = store_->List("job-" + std::to_string(job), v1::CHECKPOINT_KIND_FULL);
    ASSERT_TRUE(list.ok());
    ASSERT_THAT(*list, SizeIs(2 * kEach));
    for (const v1::Checkpoint& c : *list) {
      const int t = static_cast<int>(c.metadata().step()) / kEach;
      const int i = static_cast<int>(c.metadata().step()) % kEach;
      EXPECT_EQ(ReadAll(c), RandomBytes(50000 + t * 1000 + i, t * 100 + i));
      total += c.metadata().size_bytes();
    }
  }
  EXPECT_EQ(store_->stored_bytes(), total);
  EXPECT_THAT(Files("tmp"), IsEmpty());
}

TEST_F(CheckpointStoreTest, ReaderOpenedBeforeRetentionStillReadsEverything) {
  const std::string bytes = RandomBytes(3 << 20, 14);
  auto old = Put("job-a", 1, bytes);
  ASSERT_TRUE(old.ok());
  auto reader = store_->OpenReader(*old, 0);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto head = (*reader)->Read(1000);
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE(Put("job-a", 2, "newer", {.keep_last = 1}).ok());
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(2));
  EXPECT_FALSE(fs::exists(options_.dir + "/blobs/" + old->metadata().sha256().substr(0, 2) + "/" +
                          old->metadata().sha256()));
  EXPECT_EQ(*head + ReadAll(**reader), bytes);
  EXPECT_EQ(store_->OpenReader(*old, 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointStoreTest, IdenticalBytesShareOneBlob) {
  const std::string bytes = RandomBytes(4096, 15);
  ASSERT_TRUE(Put("job-a", 1, bytes).ok());
  ASSERT_TRUE(Put("job-b", 1, bytes).ok());
  EXPECT_THAT(Files("blobs"), SizeIs(1));
  EXPECT_EQ(store_->stored_bytes(), 4096);
}

TEST_F(CheckpointStoreTest, ABlobThatFailsVerificationIsQuarantinedAndNoLongerOffered) {
  const std::string older = RandomBytes(5000, 20);
  const std::string newer = RandomBytes((2 << 20) + 300, 21);
  auto ten = Put("job-a", 10, older);
  auto twenty = Put("job-a", 20, newer);
  ASSERT_TRUE(ten.ok() && twenty.ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(*twenty, (1 << 20) + 5));

  const auto [bytes, status] = ReadUntilError(*twenty);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("checkpoint ", twenty->id(),
                                     " failed verification on the coordinator: ")));
  EXPECT_THAT(status.message(), HasSubstr(twenty->metadata().sha256()));
  EXPECT_THAT(status.message(), HasSubstr("; it has been quarantined"));
  EXPECT_LT(bytes.size(), newer.size()) << "the last bytes are withheld";
  EXPECT_EQ(store_->quarantined_total(), 1);
  const std::vector<std::string> lines = LogLines();
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_THAT(lines[0],
              ::testing::StartsWith(absl::StrCat("checkpoint ", twenty->id(),
                                                 " of job job-a (step 20, full) "
                                                 "quarantined: its bytes have SHA-256 ")));

  // Not listed, not the latest, not at its step; asked for by id, the
  // answer names the quarantine.
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_UNSPECIFIED), ElementsAre(10));
  auto latest = store_->Latest("job-a", v1::CHECKPOINT_KIND_FULL);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->id(), ten->id());
  EXPECT_EQ(store_->AtStep("job-a", 20, v1::CHECKPOINT_KIND_FULL).status().code(),
            absl::StatusCode::kNotFound);
  const absl::Status by_id = store_->Get("job-a", twenty->id()).status();
  EXPECT_EQ(by_id.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(by_id.message(), HasSubstr("quarantined at 2023-11-14T23:13:20Z"));
  EXPECT_THAT(by_id.message(), HasSubstr("its bytes have SHA-256"));
  EXPECT_EQ(store_->OpenReader(*twenty, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(*ten), older);

  // Durable: a reopened store still passes over it.
  store_.reset();
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(10));
  EXPECT_EQ(store_->Get("job-a", twenty->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CheckpointStoreTest, AReaderFromAnOffsetVerifiesTheBytesItDoesNotSend) {
  const std::string bytes = RandomBytes((3 << 20) + 11, 22);
  auto checkpoint = Put("job-a", 10, bytes);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(ReadAll(*checkpoint, 2 << 20), bytes.substr(2 << 20));
  ASSERT_NO_FATAL_FAILURE(FlipByte(*checkpoint, 7));  // before the offset
  const auto [sent, status] = ReadUntilError(*checkpoint, 2 << 20);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("quarantined"));
  EXPECT_EQ(sent, bytes.substr(2 << 20, sent.size()));
  EXPECT_LT(sent.size(), bytes.size() - (2 << 20));
  EXPECT_EQ(store_->quarantined_total(), 1);
}

TEST_F(CheckpointStoreTest, ATruncatedBlobIsQuarantinedToo) {
  const std::string bytes = RandomBytes(40000, 23);
  auto checkpoint = Put("job-a", 10, bytes);
  ASSERT_TRUE(checkpoint.ok());
  const std::string& digest = checkpoint->metadata().sha256();
  fs::resize_file(options_.dir + "/blobs/" + digest.substr(0, 2) + "/" + digest, 30000);
  const auto [sent, status] = ReadUntilError(*checkpoint);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("ends at byte 30000 of 40000"));
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), IsEmpty());
  EXPECT_EQ(store_->Latest("job-a", v1::CHECKPOINT_KIND_FULL).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CheckpointStoreTest, ACheckpointWhoseFileIsMissingIsQuarantinedWhenOpened) {
  auto older = Put("job-a", 5, RandomBytes(1000, 25));
  auto newer = Put("job-a", 10, RandomBytes(2000, 26));
  ASSERT_TRUE(older.ok() && newer.ok());
  const std::string& digest = newer->metadata().sha256();
  ASSERT_TRUE(fs::remove(options_.dir + "/blobs/" + digest.substr(0, 2) + "/" + digest));
  const absl::Status opened = store_->OpenReader(*newer, 0).status();
  EXPECT_EQ(opened.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.message(), HasSubstr(absl::StrCat("checkpoint ", newer->id(),
                                                       " is recorded but its file is missing")));
  EXPECT_THAT(opened.message(), HasSubstr("; it has been quarantined"));
  EXPECT_EQ(store_->quarantined_total(), 1);
  auto latest = store_->Latest("job-a", v1::CHECKPOINT_KIND_FULL);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->id(), older->id());
  EXPECT_EQ(store_->OpenReader(*newer, 0).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CheckpointStoreTest, EveryRecordOfTheBadBlobIsQuarantinedOnce) {
  const std::string bytes = RandomBytes(4096, 24);
  auto a = Put("job-a", 1, bytes);
  auto b = Put("job-b", 7, bytes);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(*a, 100));
  EXPECT_EQ(ReadUntilError(*a).second.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->quarantined_total(), 2);
  const absl::Status other = store_->Get("job-b", b->id()).status();
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.message(), HasSubstr(absl::StrCat("the same file as checkpoint ", a->id())));
  const std::vector<std::string> lines = LogLines();
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_THAT(lines[1], HasSubstr(absl::StrCat("checkpoint ", b->id(), " of job job-b (step 7")));
  // Quarantining again changes nothing and counts nothing.
  ASSERT_TRUE(store_->Quarantine("job-b", b->id(), "again").ok());
  EXPECT_EQ(store_->quarantined_total(), 2);
  EXPECT_THAT(store_->Get("job-b", b->id()).status().message(), Not(HasSubstr("again")));
  EXPECT_EQ(store_->Quarantine("job-b", "ck-aaaaaaaaaaaaaaaaaaaa", "x").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Quarantine("job-b", "../x", "x").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointStoreTest, AFreshUploadOfTheSameStepAndBytesReplacesTheQuarantinedOne) {
  const std::string bytes = RandomBytes(20000, 25);
  auto first = Put("job-a", 10, bytes);
  ASSERT_TRUE(first.ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(*first, 0));
  ASSERT_EQ(ReadUntilError(*first).second.code(), absl::StatusCode::kDataLoss);
  // A resumed run reaches step 10 again with the same bytes (deterministic
  // training): the new record is offered and its blob reads back whole.
  auto again = Put("job-a", 10, bytes);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(10));
  const auto [read, status] = ReadUntilError(*again);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(read, bytes);
}

TEST_F(CheckpointStoreTest, RetentionDoesNotCountQuarantinedCheckpoints) {
  const RetentionPolicy policy{.keep_last = 2};
  std::map<int64_t, v1::Checkpoint> put;
  for (int64_t step : {10, 20, 30}) {
    auto c = Put("job-a", step, RandomBytes(1000 + step, step), policy);
    ASSERT_TRUE(c.ok());
    put[step] = *c;
  }
  // 10 went with the commit of 30; 30 turns out bad.
  ASSERT_TRUE(store_->Quarantine("job-a", put[30].id(), "test").ok());
  ASSERT_TRUE(Put("job-a", 40, RandomBytes(1040, 40), policy).ok());
  // Two healthy ones are kept (40, 20); 30 stays, newer than the second.
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(20, 40));
  EXPECT_EQ(store_->Get("job-a", put[30].id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Once two healthy ones are newer, the quarantined record and its blob go.
  ASSERT_TRUE(Put("job-a", 50, RandomBytes(1050, 50), policy).ok());
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(40, 50));
  EXPECT_EQ(store_->Get("job-a", put[30].id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Files("blobs"), SizeIs(2));
  EXPECT_EQ(store_->stored_bytes(), 1040 + 1050);
}

TEST_F(CheckpointStoreTest, AFinalCheckpointThatIsQuarantinedIsNotKeptForever) {
  const RetentionPolicy policy{.keep_last = 1};
  auto final = Put("job-a", 10, "final bytes", policy, /*final=*/true);
  ASSERT_TRUE(final.ok());
  ASSERT_TRUE(store_->Quarantine("job-a", final->id(), "test").ok());
  ASSERT_TRUE(Put("job-a", 20, "newer", policy).ok());
  EXPECT_EQ(store_->Get("job-a", final->id()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointStoreTest, AReaderThatOutlivesItsStoreStillRefusesBadBytes) {
  const std::string bytes = RandomBytes(10000, 26);
  auto checkpoint = Put("job-a", 10, bytes);
  ASSERT_TRUE(checkpoint.ok());
  ASSERT_NO_FATAL_FAILURE(FlipByte(*checkpoint, 9));
  auto reader = store_->OpenReader(*checkpoint, 0);
  ASSERT_TRUE(reader.ok());
  store_.reset();
  const absl::StatusOr<std::string> read = (*reader)->Read(1 << 20);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("quarantining it failed"));
}

TEST_F(CheckpointStoreTest, AVersion1IndexIsMigratedAndKeepsItsCheckpoints) {
  const std::string bytes = RandomBytes(3000, 27);
  auto checkpoint = Put("job-a", 10, bytes);
  ASSERT_TRUE(checkpoint.ok());
  store_.reset();
  {
    // What a build of schema version 1 left behind.
    auto db = SqliteDb::Open(options_.dir + "/index.db", absl::Seconds(5));
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Exec("DROP INDEX checkpoints_by_object_key;"
                           "ALTER TABLE checkpoints DROP COLUMN object_etag;"
                           "ALTER TABLE checkpoints DROP COLUMN object_key;"
                           "ALTER TABLE checkpoints DROP COLUMN quarantine_reason;"
                           "ALTER TABLE checkpoints DROP COLUMN quarantined_us;"
                           "DELETE FROM schema_migrations WHERE version >= 2;"
                           "PRAGMA user_version = 1;")
                    .ok());
  }
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), ElementsAre(10));
  EXPECT_EQ(ReadAll(*checkpoint), bytes);
  ASSERT_TRUE(store_->Quarantine("job-a", checkpoint->id(), "test").ok());
  EXPECT_THAT(Steps("job-a", v1::CHECKPOINT_KIND_FULL), IsEmpty());
}

}  // namespace
}  // namespace clmae
