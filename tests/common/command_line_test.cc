#include "common/command_line.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, command_line_test_count, 1, "a flag for CheckFlags");
ABSL_FLAG(bool, command_line_test_switch, false, "a boolean flag for CheckFlags");

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<char*> Args(std::vector<std::string>& storage) {
  std::vector<char*> out;
  for (std::string& s : storage) out.push_back(s.data());
  return out;
}

TEST(CommandLineTest, DashedNamesBecomeAbseilNames) {
  std::vector<std::string> in = {"prog", "--data-dir=/a-b", "--port-file", "x-y",
                                 "--",   "--keep-me"};
  std::vector<char*> argv = Args(in);
  std::vector<std::string> storage;
  std::vector<char*> out = NormaliseFlagNames(static_cast<int>(argv.size()), argv.data(), storage);
  EXPECT_THAT(std::vector<std::string>(out.begin(), out.end()),
              ElementsAre("prog", "--data_dir=/a-b", "--port_file", "x-y", "--", "--keep-me"));
}

TEST(CommandLineTest, CheckFlagsNamesUnknownFlagsAndBadValues) {
  std::vector<std::string> good = {
      "prog", "--command_line_test_count=3", "--command_line_test_count",
      "4",    "--command_line_test_switch",  "--nocommand_line_test_switch"};
  EXPECT_TRUE(CheckFlags(Args(good)).ok());

  std::vector<std::string> unknown = {"prog", "--no_such_flag=1"};
  absl::Status status = CheckFlags(Args(unknown));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--no_such_flag"));
  EXPECT_THAT(status.message(), HasSubstr("--help"));

  std::vector<std::string> bad_value = {"prog", "--command_line_test_count=many"};
  status = CheckFlags(Args(bad_value));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("many"));

  std::vector<std::string> no_value = {"prog", "--command_line_test_count"};
  EXPECT_THAT(CheckFlags(Args(no_value)).message(), HasSubstr("needs a value"));
}

TEST(CommandLineTest, CheckFlagsLeavesAbseilUsageFlagsToTheParser) {
  for (const char* flag : {"--help", "--helpfull", "--helpshort", "--help=listen", "--version"}) {
    std::vector<std::string> args = {"prog", flag};
    EXPECT_TRUE(CheckFlags(Args(args)).ok()) << flag;
  }
}

TEST(CommandLineDeathTest, HelpExitsWithZero) {
  for (const char* flag : {"--help", "--helpfull", "-help", "--helpmatch=command_line"}) {
    std::vector<std::string> in = {"prog", flag};
    std::vector<char*> argv = Args(in);
    EXPECT_EXIT(ParseCommandLineOrExit(static_cast<int>(argv.size()), argv.data(), "prog"),
                ::testing::ExitedWithCode(0), "")
        << flag;
  }
}

TEST(CommandLineDeathTest, UnknownFlagExitsWithTheUsageCode) {
  std::vector<std::string> in = {"prog", "--no_such_flag_here"};
  std::vector<char*> argv = Args(in);
  EXPECT_EXIT(ParseCommandLineOrExit(static_cast<int>(argv.size()), argv.data(), "prog"),
              ::testing::ExitedWithCode(2), "unknown flag --no_such_flag_here");
}

TEST(CommandLineTest, PortRanges) {
  auto range = ParsePortRange("29500-29999", "master_port_range");
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->first, 29500);
  EXPECT_EQ(range->second, 29999);
  for (const char* bad : {"29999-29500", "0-10", "1-70000", "29500", "a-b", ""}) {
    auto refused = ParsePortRange(bad, "master_port_range");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status().message(), HasSubstr("--master_port_range")) << bad;
  }
}

}  // namespace
}  // namespace clmae
