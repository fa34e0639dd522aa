#include "common/s3/sigv4_presign.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

// AWS's published example: S3 API reference, "Authenticating Requests: Using
// Query Parameters (AWS Signature Version 4)", a presigned GET of
// examplebucket/test.txt.
PresignRequest AwsExample() {
  PresignRequest r;
  r.method = "GET";
  r.scheme = "https";
  r.host = "examplebucket.s3.amazonaws.com";
  r.path = "/test.txt";
  r.region = "us-east-1";
  r.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  r.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  r.now = absl::FromUnixSeconds(1369353600);  // 2013-05-24T00:00:00Z
  r.expires = absl::Seconds(86400);
  return r;
}

TEST(PresignUrlTest, ReproducesTheAwsExampleSignature) {
  absl::StatusOr<std::string> url = PresignUrl(AwsExample());
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(*url,
            "https://examplebucket.s3.amazonaws.com/test.txt"
            "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature="
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

// AWS's published example of the derived signing key (General Reference,
// "Examples of how to derive a signing key for Signature Version 4").
TEST(SigV4SigningKeyTest, ReproducesTheAwsExampleKey) {
  EXPECT_EQ(absl::BytesToHexString(SigV4SigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                   "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(PresignUrlTest, EverySignedPartChangesTheSignature) {
  const std::string base = *PresignUrl(AwsExample());
  const auto signature = [](const std::string& url) { return url.substr(url.rfind('=') + 1); };
  PresignRequest other = AwsExample();
  other.method = "PUT";
  EXPECT_NE(signature(*PresignUrl(other)), signature(base));
  other = AwsExample();
  other.path = "/test2.txt";
  EXPECT_NE(signature(*PresignUrl(other)), signature(base));
  other = AwsExample();
  other.query = {{"partNumber", "1"}, {"uploadId", "abc"}};
  const std::string with_part = *PresignUrl(other);
  EXPECT_NE(signature(with_part), signature(base));
  // Extra parameters are sorted in with the X-Amz-* ones.
  EXPECT_TRUE(absl::StrContains(with_part, "test.txt?X-Amz-Algorithm=")) << with_part;
  EXPECT_TRUE(absl::StrContains(with_part, "X-Amz-SignedHeaders=host&partNumber=1&uploadId=abc"))
      << with_part;
}

TEST(PresignUrlTest, EncodesKeysButKeepsTheirSlashes) {
  PresignRequest r = AwsExample();
  r.path = "/bucket/a b/c+d";
  EXPECT_TRUE(absl::StartsWith(*PresignUrl(r),
                               "https://examplebucket.s3.amazonaws.com/bucket/a%20b/c%2Bd?"));
  EXPECT_EQ(AwsUriEncode("a/b~c_d.e-f", false), "a%2Fb~c_d.e-f");
}

TEST(PresignUrlTest, RefusesWhatS3WouldRefuse) {
  PresignRequest r = AwsExample();
  r.expires = absl::Hours(24 * 8);
  EXPECT_TRUE(absl::StrContains(PresignUrl(r).status().message(), "7 days"));
  r = AwsExample();
  r.expires = absl::ZeroDuration();
  EXPECT_EQ(PresignUrl(r).status().code(), absl::StatusCode::kInvalidArgument);
  r = AwsExample();
  r.path = "test.txt";
  EXPECT_TRUE(absl::StrContains(PresignUrl(r).status().message(), "path"));
  r = AwsExample();
  r.secret_access_key.clear();
  EXPECT_TRUE(absl::StrContains(PresignUrl(r).status().message(), "secret"));
  r = AwsExample();
  r.host.clear();
  EXPECT_TRUE(absl::StrContains(PresignUrl(r).status().message(), "host"));
}

}  // namespace
}  // namespace clmae
