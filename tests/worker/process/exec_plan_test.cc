#include "worker/process/exec_plan.h"

#include <sys/stat.h>

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/process/process_test_util.h"

namespace clmae::process_internal {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ExecPlanTest, OverridesReplaceInheritedVariablesAndAddNewOnes) {
  const char* base[] = {"HOME=/home/a", "RANK=7", "KEEP=1", nullptr};
  auto plan = MakeExecPlan({"/bin/true"}, {{"RANK", "0"}, {"WORLD_SIZE", "2"}}, base);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->envp, Contains("RANK=0"));
  EXPECT_THAT(plan->envp, Not(Contains("RANK=7")));
  EXPECT_THAT(plan->envp, Contains("WORLD_SIZE=2"));
  EXPECT_THAT(plan->envp, Contains("KEEP=1"));
  EXPECT_EQ(plan->path, "/bin/true");
}

TEST(ExecPlanTest, ProgramWithoutSlashIsFoundOnTheChildsPath) {
  clmae::testing::TempDir dir;
  std::string tool = dir.File("my-tool");
  clmae::testing::WriteFile(tool, "#!/bin/sh\n");
  chmod(tool.c_str(), 0755);
  const char* base[] = {"PATH=/nonexistent", nullptr};
  auto plan = MakeExecPlan({"my-tool", "arg"}, {{"PATH", "/nonexistent2:" + dir.path()}}, base);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->path, tool);
  EXPECT_EQ(plan->argv, (std::vector<std::string>{"my-tool", "arg"}));
}

TEST(ExecPlanTest, MissingProgramIsNotFoundWithItsName) {
  const char* base[] = {"PATH=/usr/bin:/bin", nullptr};
  auto plan = MakeExecPlan({"clmae-no-such-program"}, {}, base);
  EXPECT_TRUE(absl::IsNotFound(plan.status())) << plan.status();
  EXPECT_THAT(plan.status().message(), HasSubstr("clmae-no-such-program"));
  EXPECT_THAT(plan.status().message(), HasSubstr("/usr/bin:/bin"));
}

TEST(ExecPlanTest, NonExecutableFileOnPathIsHandedToExecve) {
  clmae::testing::TempDir dir;
  clmae::testing::WriteFile(dir.File("data"), "not a program\n");
  chmod(dir.File("data").c_str(), 0644);
  const char* base[] = {nullptr};
  auto plan = MakeExecPlan({"data"}, {{"PATH", dir.path()}}, base);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->path, dir.File("data"));  // execve() then reports EACCES
}

TEST(ExecPlanTest, RejectsBadInput) {
  EXPECT_TRUE(absl::IsInvalidArgument(MakeExecPlan({}, {}, nullptr).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MakeExecPlan({""}, {}, nullptr).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeExecPlan({"/bin/true"}, {{"A=B", "1"}}, nullptr).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MakeExecPlan({"/bin/true"}, {{"", "1"}}, nullptr).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      MakeExecPlan({"/bin/true", std::string("a\0b", 3)}, {}, nullptr).status()));
}

TEST(ExecPlanTest, CStringArrayIsNullTerminated) {
  std::vector<std::string> strings = {"a", "bc"};
  std::vector<char*> array = ToCStringArray(strings);
  ASSERT_EQ(array.size(), 3u);
  EXPECT_STREQ(array[0], "a");
  EXPECT_STREQ(array[1], "bc");
  EXPECT_EQ(array[2], nullptr);
}

}  // namespace
}  // namespace clmae::process_internal
