#include "services/auth.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(ParseTokensTest, ReadsRolesSkippingCommentsAndBlankLines) {
  auto parsed = ParseTokens("# tokens\n\nclient abc\n  worker\tdef  \n", "tokens");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_THAT(parsed->entries, SizeIs(2));
  EXPECT_EQ(parsed->entries[0].role, Role::kClient);
  EXPECT_EQ(parsed->entries[0].token, "abc");
  EXPECT_EQ(parsed->entries[1].role, Role::kWorker);
  EXPECT_EQ(parsed->entries[1].token, "def");
}

TEST(ParseTokensTest, BadLinesAreNamed) {
  auto unknown_role = ParseTokens("client a\nadmin b\n", "/etc/tokens");
  EXPECT_EQ(unknown_role.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown_role.status().message(), HasSubstr("/etc/tokens:2"));
  EXPECT_THAT(unknown_role.status().message(), HasSubstr("admin"));
  auto missing = ParseTokens("\n\nworker\n", "t");
  EXPECT_THAT(missing.status().message(), HasSubstr("t:3"));
  auto extra = ParseTokens("client a b\n", "t");
  EXPECT_THAT(extra.status().message(), HasSubstr("t:1"));
}

TEST(LoadTokensFileTest, WarnsWhenEveryoneCanReadIt) {
  const std::string path = ::testing::TempDir() + "/clmae_tokens_test";
  std::ofstream(path) << "client abc\n";
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  auto private_file = LoadTokensFile(path);
  ASSERT_TRUE(private_file.ok()) << private_file.status();
  EXPECT_THAT(private_file->warnings, IsEmpty());
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto open_file = LoadTokensFile(path);
  ASSERT_TRUE(open_file.ok());
  ASSERT_THAT(open_file->warnings, SizeIs(1));
  EXPECT_THAT(open_file->warnings[0], HasSubstr(path));
  std::remove(path.c_str());

  auto missing = LoadTokensFile(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(path));
}

TEST(AuthorizerTest, RefusesNoTokensUnlessAnonymousIsAllowed) {
  auto refused = Authorizer::Create({}, false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--insecure_no_auth"));
  auto anonymous = Authorizer::Create({}, true);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_TRUE(anonymous->AuthorizeHeader("", Role::kWorker).ok());
}

TEST(AuthorizerTest, OneTokenCannotHoldBothRoles) {
  EXPECT_EQ(Authorizer::Create({{Role::kClient, "x"}, {Role::kWorker, "x"}}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Authorizer::Create({{Role::kClient, ""}}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AuthorizerTest, ChecksTheHeader) {
  auto auth = Authorizer::Create({{Role::kClient, "c-token"}, {Role::kWorker, "w-token"}}, false);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE(auth->AuthorizeHeader("Bearer c-token", Role::kClient).ok());
  EXPECT_TRUE(auth->AuthorizeHeader("bearer w-token", Role::kWorker).ok());
  EXPECT_EQ(auth->AuthorizeHeader("Bearer w-token", Role::kClient).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->AuthorizeHeader("", Role::kClient).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("c-token", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer c-toke", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer c-token-longer", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer ", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace clmae
