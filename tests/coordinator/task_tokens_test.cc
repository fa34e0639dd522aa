#include "coordinator/task_tokens.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class TaskTokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_task_tokens_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

TEST_F(TaskTokensTest, IssuedTokensVerifyAndNameTheirTask) {
  auto tokens = TaskTokens::Open(dir_ + "/key");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  const TaskKey task{"job-0123abcd", 3, 1};
  const std::string token = tokens->Issue(task);
  EXPECT_THAT(token, StartsWith("task:job-0123abcd:3:1:"));
  auto verified = tokens->Verify(token);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, task);
  EXPECT_NE(tokens->Issue({"job-0123abcd", 3, 0}), token);
}

TEST_F(TaskTokensTest, TheKeyIsKeptOwnerOnlyAndReusedAfterARestart) {
  const std::string path = dir_ + "/key";
  auto first = TaskTokens::Open(path);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(st.st_size, static_cast<off_t>(TaskTokens::kKeyBytes));
  const std::string token = first->Issue({"job-a", 1, 0});
  auto again = TaskTokens::Open(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->Verify(token).ok());
  // Another key (another coordinator) does not accept it.
  auto other = TaskTokens::Open(dir_ + "/other-key");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->Verify(token).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(TaskTokensTest, AnythingElseIsUnauthenticated) {
  auto tokens = TaskTokens::Open(dir_ + "/key");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  const std::string token = tokens->Issue({"job-a", 1, 0});
  std::string changed_rank = token;
  changed_rank.replace(changed_rank.find(":1:0:"), 5, ":1:1:");
  for (const std::string& bad :
       {std::string(), std::string("task"), std::string("client-token"), changed_rank,
        token.substr(0, token.size() - 1), token + "0",
        "task::1:0:" + token.substr(token.rfind(':') + 1), std::string("task:job-a:x:0:00")}) {
    SCOPED_TRACE(bad);
    auto verified = tokens->Verify(bad);
    EXPECT_EQ(verified.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(verified.status().message(), HasSubstr("unknown bearer token"));
  }
}

TEST_F(TaskTokensTest, AKeyFileOfTheWrongSizeIsRefusedByName) {
  const std::string path = dir_ + "/key";
  std::ofstream(path) << "short";
  auto tokens = TaskTokens::Open(path);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(tokens.status().message(), HasSubstr(path));
  EXPECT_THAT(tokens.status().message(), HasSubstr("5 bytes"));
}

}  // namespace
}  // namespace clmae
