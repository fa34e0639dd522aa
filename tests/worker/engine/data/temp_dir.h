#pragma once

// A scratch directory for one test, removed with everything in it when the
// test ends. Removal walks the tree with nftw rather than calling
// std::filesystem::remove_all, whose crashing copy in the PyTorch wheel's
// libtorch.so a binary can bind to (see cmake/ClmaeTorch.cmake).

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace clmae::testing_util {

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "clmae_data_XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (!path_.empty()) {
      nftw(
          path_.c_str(),
          [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); }, 16,
          FTW_DEPTH | FTW_PHYS);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The directory; empty if it could not be created.
  const std::string& path() const { return path_; }
  // path()/relative
  std::string Join(const std::string& relative) const { return path_ + "/" + relative; }
  // Creates path()/relative (one level); true on success or if it exists.
  bool MakeDir(const std::string& relative) const {
    struct stat st;
    const std::string p = Join(relative);
    return mkdir(p.c_str(), 0755) == 0 || (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
  }

 private:
  std::string path_;
};

}  // namespace clmae::testing_util
