#include "common/text.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::EndsWith;
using ::testing::StartsWith;

TEST(ClipTest, ShortTextIsUnchanged) {
  EXPECT_EQ(Clip("job-1"), "job-1");
  EXPECT_EQ(Clip(std::string(kMaxEchoedChars, 'x')), std::string(kMaxEchoedChars, 'x'));
}

TEST(ClipTest, LongTextKeepsItsStartAndSaysItsLength) {
  const std::string name(1000000, 'n');
  const std::string clipped = Clip(name);
  EXPECT_THAT(clipped, StartsWith(std::string(kMaxEchoedChars, 'n') + "..."));
  EXPECT_THAT(clipped, EndsWith("(1000000 characters)"));
  EXPECT_LT(clipped.size(), kMaxEchoedChars + 40);
}

TEST(ClipTest, NeverSplitsAUtf8Character) {
  // "λ" is two bytes; a cut after 3 bytes would split the second one.
  EXPECT_EQ(Clip("λλλλ", 3), "λ... (8 characters)");
}

}  // namespace
}  // namespace clmae
