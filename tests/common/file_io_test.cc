#include "common/file_io.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

namespace clmae {
namespace {

namespace fs = std::filesystem;

TEST(AtomicFileTest, WritesReplacesAndLeavesNoTemporaries) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("atomic-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "sub" / "f.bin").string();
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, std::string("sec\0nd", 6)).ok());
  auto read = ReadFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, std::string("sec\0nd", 6));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}

TEST(AtomicFileTest, FailureKeepsTheOldFileAndSaysWhy) {
  if (::geteuid() == 0) {
    // Root ignores directory permissions; a full disk is simulated with /dev/full instead.
    auto st = WriteFileAtomically("/proc/clmae-no-such-dir/f", "x");
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("/proc/clmae-no-such-dir"), std::string::npos) << st;
    return;
  }
  const fs::path dir = fs::path(::testing::TempDir()) / ("ro-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "f").string();
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  ::chmod(dir.c_str(), 0500);
  auto st = WriteFileAtomically(path, "new");
  ::chmod(dir.c_str(), 0700);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(*ReadFile(path), "old");
  fs::remove_all(dir);
}

TEST(AtomicFileTest, MissingFileIsNotFoundNamingThePath) {
  auto r = ReadFile("/nonexistent/clmae/file");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/clmae/file"), std::string::npos);
}

}  // namespace
}  // namespace clmae
