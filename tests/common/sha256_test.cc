#include "common/sha256.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace clmae {
namespace {

// Known answers from NIST's SHA-256 examples (FIPS 180-2, appendix B, and
// the "SHA256ShortMsg" vectors of the CAVP).
struct KnownAnswer {
  std::string message;
  std::string digest;
};

std::vector<KnownAnswer> KnownAnswers() {
  return {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
       "lmnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {std::string(1000000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
      {std::string("\xbd", 1), "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b"},
      {std::string("\xc9\x8c\x8e\x55", 4),
       "7abc22c0ae5af26ce93dbb94433a0e0b2e119d014f8e7f65bd56c61ccccd9504"},
  };
}

TEST(Sha256Test, NistKnownAnswers) {
  for (const KnownAnswer& answer : KnownAnswers()) {
    EXPECT_EQ(Sha256Hex(answer.message), answer.digest) << answer.message.size() << " bytes";
  }
}

TEST(Sha256Test, IncrementalUpdatesEqualOneShot) {
  for (const KnownAnswer& answer : KnownAnswers()) {
    Sha256 hasher;
    // Uneven pieces, crossing the 64-byte block boundary at odd places.
    for (size_t at = 0, piece = 1; at < answer.message.size(); at += piece, piece = piece * 3 + 1) {
      hasher.Update(absl::string_view(answer.message).substr(at, piece));
    }
    EXPECT_EQ(hasher.HexDigest(), answer.digest) << answer.message.size() << " bytes";
    // HexDigest resets: the next digest is of nothing.
    EXPECT_EQ(hasher.HexDigest(), KnownAnswers()[0].digest);
  }
}

// Downloads print "DIGEST  PATH" for `sha256sum -c`: the digest of a file
// must be the one coreutils computes.
TEST(Sha256Test, FileDigestEqualsSha256sum) {
  clmae::testing::TempDir dir;
  const std::string path = dir.File("blob.bin");
  std::string bytes;
  for (int i = 0; i < (3 << 20) + 17; ++i) bytes.push_back(static_cast<char>((i * 131) ^ (i >> 7)));
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());

  absl::StatusOr<std::string> ours = Sha256File(path);
  ASSERT_TRUE(ours.ok()) << ours.status();
  std::FILE* pipe = popen(absl::StrCat("sha256sum '", path, "'").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof(line), pipe), nullptr);
  ASSERT_EQ(pclose(pipe), 0);
  EXPECT_EQ(absl::StrCat(*ours, "  ", path, "\n"), line);
  EXPECT_EQ(*ours, Sha256Hex(bytes));

  absl::StatusOr<std::string> prefix = Sha256File(path, 3);
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(*prefix, Sha256Hex(bytes.substr(0, 3)));
  EXPECT_EQ(Sha256File(path, bytes.size() + 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Sha256File(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST(Sha256Test, IsSha256HexAcceptsOnlyLowercaseDigests) {
  EXPECT_TRUE(IsSha256Hex(KnownAnswers()[1].digest));
  EXPECT_FALSE(IsSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
  EXPECT_FALSE(IsSha256Hex(KnownAnswers()[1].digest.substr(1)));
  EXPECT_FALSE(IsSha256Hex("../../etc/passwd"));
}

}  // namespace
}  // namespace clmae
