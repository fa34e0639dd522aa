#include "services/auth.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string Line(const std::string& principal, const std::string& role, const std::string& token) {
  return principal + " " + role + " sha256:" + Sha256Hex(token) + "\n";
}

TEST(ParseTokensTest, ReadsPrincipalsRolesAndDigestsSkippingCommentsAndBlankLines) {
  auto parsed =
      ParseTokens("# tokens\n\n" + Line("alice", "user", "a") + "  " +
                      Line("ops.team@example", "operator", "o") + Line("node-1", "worker", "w"),
                  "tokens");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_THAT(parsed->entries, SizeIs(3));
  EXPECT_EQ(parsed->entries[0].principal, "alice");
  EXPECT_EQ(parsed->entries[0].role, Role::kUser);
  EXPECT_EQ(parsed->entries[0].token_sha256, Sha256Hex("a"));
  EXPECT_EQ(parsed->entries[1].principal, "ops.team@example");
  EXPECT_EQ(parsed->entries[1].role, Role::kOperator);
  EXPECT_EQ(parsed->entries[2].role, Role::kWorker);
  EXPECT_FALSE(parsed->entries[2].fleet);  // a node's own credential
  EXPECT_THAT(parsed->warnings, IsEmpty());
}

TEST(ParseTokensTest, CertificatePrincipalsAreListedWithoutAToken) {
  auto parsed = ParseTokens("node-7 worker cert\nalice user cert\n", "tokens");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_THAT(parsed->entries, SizeIs(2));
  EXPECT_EQ(parsed->entries[0].principal, "node-7");
  EXPECT_EQ(parsed->entries[0].role, Role::kWorker);
  EXPECT_TRUE(parsed->entries[0].certificate);
  EXPECT_EQ(parsed->entries[0].token_sha256, "");
  EXPECT_TRUE(Authorizer::Create(parsed->entries, false).ok());
  // A certificate principal has no token: an empty bearer does not match it.
  auto authorizer = Authorizer::Create(parsed->entries, false);
  EXPECT_EQ(authorizer->AuthorizeHeader("Bearer ", Access::kWorker).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ParseTokensTest, TheOlderClearTokenLinesAreReadWithAWarning) {
  auto parsed = ParseTokens("client abc\nworker\tdef\n", "tokens");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_THAT(parsed->entries, SizeIs(2));
  EXPECT_EQ(parsed->entries[0].principal, "client");
  EXPECT_EQ(parsed->entries[0].role, Role::kOperator);
  EXPECT_EQ(parsed->entries[0].token_sha256, Sha256Hex("abc"));
  EXPECT_EQ(parsed->entries[1].role, Role::kWorker);
  EXPECT_TRUE(parsed->entries[1].fleet);  // the shared worker token of old: any node
  ASSERT_THAT(parsed->warnings, SizeIs(2));
  EXPECT_THAT(parsed->warnings[0], HasSubstr("tokens:1"));
  EXPECT_THAT(parsed->warnings[0], HasSubstr("sha256sum"));
}

TEST(ParseTokensTest, BadLinesAreNamed) {
  auto unknown_role =
      ParseTokens(Line("a", "user", "x") + "b admin sha256:" + Sha256Hex("y"), "/etc/tokens");
  EXPECT_EQ(unknown_role.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown_role.status().message(), HasSubstr("/etc/tokens:2"));
  EXPECT_THAT(unknown_role.status().message(), HasSubstr("admin"));
  auto clear = ParseTokens("\n\nalice user secret\n", "t");
  EXPECT_THAT(clear.status().message(), HasSubstr("t:3"));
  EXPECT_THAT(clear.status().message(), HasSubstr("never in clear"));
  auto short_digest = ParseTokens("alice user sha256:abc\n", "t");
  EXPECT_EQ(short_digest.status().code(), absl::StatusCode::kInvalidArgument);
  auto upper = ParseTokens("alice user sha256:" + std::string(64, 'A') + "\n", "t");
  EXPECT_EQ(upper.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_name = ParseTokens("al/ice user sha256:" + Sha256Hex("x") + "\n", "t");
  EXPECT_THAT(bad_name.status().message(), HasSubstr("al/ice"));
  auto missing = ParseTokens("\n\nworker\n", "t");
  EXPECT_THAT(missing.status().message(), HasSubstr("t:3"));
  auto extra = ParseTokens("a user sha256:" + Sha256Hex("x") + " more\n", "t");
  EXPECT_THAT(extra.status().message(), HasSubstr("t:1"));
}

TEST(LoadTokensFileTest, WarnsWhenEveryoneCanReadIt) {
  const std::string path = ::testing::TempDir() + "/clmae_tokens_test";
  std::ofstream(path) << Line("alice", "user", "abc");
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
  auto principal = anonymous->AuthorizeHeader("", Access::kOperator);
  ASSERT_TRUE(principal.ok());
  EXPECT_EQ(principal->name, "anonymous");
  EXPECT_TRUE(anonymous->AuthorizeHeader("", Access::kWorker).ok());
}

TEST(AuthorizerTest, OneTokenOnePrincipalAndOneRoleEach) {
  auto twice = Authorizer::Create(
      {TokenEntry::ForToken("a", Role::kUser, "x"), TokenEntry::ForToken("b", Role::kWorker, "x")},
      false);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.status().message(), HasSubstr("'a'"));
  auto two_roles = Authorizer::Create({TokenEntry::ForToken("a", Role::kUser, "x"),
                                       TokenEntry::ForToken("a", Role::kOperator, "y")},
                                      false);
  EXPECT_EQ(two_roles.status().code(), absl::StatusCode::kInvalidArgument);
  // One principal may hold several tokens (rotation).
  EXPECT_TRUE(Authorizer::Create({TokenEntry::ForToken("a", Role::kUser, "old"),
                                  TokenEntry::ForToken("a", Role::kUser, "new")},
                                 false)
                  .ok());
  EXPECT_EQ(
      Authorizer::Create({TokenEntry{"a", Role::kUser, "not-a-digest"}}, false).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(AuthorizerTest, ChecksTheHeaderAndNamesThePrincipal) {
  auto auth = Authorizer::Create({TokenEntry::ForToken("alice", Role::kUser, "u-token"),
                                  TokenEntry::ForToken("ops", Role::kOperator, "o-token"),
                                  TokenEntry::ForToken("node", Role::kWorker, "w-token")},
                                 false);
  ASSERT_TRUE(auth.ok());
  auto alice = auth->AuthorizeHeader("Bearer u-token", Access::kClient);
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->role, Role::kUser);
  EXPECT_TRUE(auth->AuthorizeHeader("Bearer o-token", Access::kClient).ok());
  EXPECT_TRUE(auth->AuthorizeHeader("Bearer o-token", Access::kOperator).ok());
  EXPECT_TRUE(auth->AuthorizeHeader("bearer w-token", Access::kWorker).ok());
  auto user_as_operator = auth->AuthorizeHeader("Bearer u-token", Access::kOperator);
  EXPECT_EQ(user_as_operator.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(user_as_operator.status().message(), HasSubstr("'alice' (user)"));
  EXPECT_EQ(auth->AuthorizeHeader("Bearer w-token", Access::kClient).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer o-token", Access::kWorker).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->AuthorizeHeader("", Access::kClient).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("u-token", Access::kClient).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer u-toke", Access::kClient).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer u-token-longer", Access::kClient).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthorizeHeader("Bearer ", Access::kClient).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(CheckJobAccessTest, UsersTheirOwnOperatorsEvery) {
  const Principal alice{"alice", Role::kUser};
  const Principal ops{"ops", Role::kOperator};
  EXPECT_TRUE(CheckJobAccess(alice, "job-1", "alice").ok());
  EXPECT_TRUE(CheckJobAccess(ops, "job-1", "alice").ok());
  EXPECT_TRUE(CheckJobAccess(ops, "job-1", "").ok());
  const absl::Status other = CheckJobAccess(alice, "job-2", "bob");
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.message(), HasSubstr("job-2"));
  EXPECT_THAT(other.message(), ::testing::Not(HasSubstr("bob")));
  EXPECT_EQ(CheckJobAccess(alice, "job-3", "").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckJobAccess(Principal{"node", Role::kWorker}, "job-1", "node").code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace clmae
