#include "common/s3/s3_config.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace clmae {
namespace {

S3Config Valid() {
  S3Config c;
  c.endpoint = "http://127.0.0.1:8333";
  c.bucket = "clmae-checkpoints";
  c.prefix = "prod/ck/";
  c.access_key_id = "id";
  c.secret_access_key = "secret";
  return c;
}

TEST(S3ConfigTest, AcceptsAValidConfig) {
  EXPECT_TRUE(ValidateS3Config(Valid()).ok());
  EXPECT_EQ(S3EndpointHost(Valid()), "127.0.0.1:8333");
  EXPECT_EQ(S3EndpointScheme(Valid()), "http");
}

TEST(S3ConfigTest, NamesTheBadField) {
  const auto message = [](S3Config c) { return std::string(ValidateS3Config(c).message()); };
  S3Config c = Valid();
  c.endpoint = "s3.amazonaws.com";
  EXPECT_TRUE(absl::StrContains(message(c), "endpoint"));
  c = Valid();
  c.endpoint = "https://host/path";
  EXPECT_TRUE(absl::StrContains(message(c), "endpoint"));
  c = Valid();
  c.bucket = "Upper";
  EXPECT_TRUE(absl::StrContains(message(c), "bucket"));
  c = Valid();
  c.prefix = "/abs";
  EXPECT_TRUE(absl::StrContains(message(c), "prefix"));
  c = Valid();
  c.prefix = "a?b";
  EXPECT_TRUE(absl::StrContains(message(c), "prefix"));
  c = Valid();
  c.secret_access_key.clear();
  EXPECT_TRUE(absl::StrContains(message(c), "credentials"));
}

TEST(S3ConfigTest, ReadsACredentialsFile) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("credentials"),
                     "# for the coordinator\n[default]\naws_access_key_id = AKID\n"
                     "aws_secret_access_key=s3cr3t\n");
  S3Config c;
  ASSERT_TRUE(LoadS3Credentials(dir.File("credentials"), c).ok());
  EXPECT_EQ(c.access_key_id, "AKID");
  EXPECT_EQ(c.secret_access_key, "s3cr3t");
  testing::WriteFile(dir.File("partial"), "aws_access_key_id = AKID\n");
  EXPECT_TRUE(absl::StrContains(LoadS3Credentials(dir.File("partial"), c).message(),
                                "aws_secret_access_key"));
  testing::WriteFile(dir.File("garbage"), "AKID s3cr3t\n");
  const absl::Status garbage = LoadS3Credentials(dir.File("garbage"), c);
  EXPECT_EQ(garbage.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(absl::StrContains(garbage.message(), "s3cr3t")) << "a secret in a message";
  EXPECT_FALSE(LoadS3Credentials(dir.File("missing"), c).ok());
}

TEST(S3ConfigTest, ReadsTheEnvironment) {
  setenv("AWS_ACCESS_KEY_ID", "env-id", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
  S3Config c;
  ASSERT_TRUE(LoadS3Credentials("", c).ok());
  EXPECT_EQ(c.access_key_id, "env-id");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  EXPECT_TRUE(absl::StrContains(LoadS3Credentials("", c).message(), "AWS_SECRET_ACCESS_KEY"));
  unsetenv("AWS_ACCESS_KEY_ID");
}

}  // namespace
}  // namespace clmae
