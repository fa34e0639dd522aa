#pragma once

// A scratch folder for one test, removed with everything in it when the test
// ends. Removal walks the tree with nftw rather than calling
// std::filesystem::remove_all, whose crashing copy in the PyTorch wheel's
// libtorch.so a test binary can bind to (see cmake/ClmaeTorch.cmake).

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>

namespace clmae::testing {

class TempDir {
 public:
  // A fresh folder under $TMPDIR (or /tmp).
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/clmae_test_XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (path_.empty()) return;
    nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The folder; empty if it could not be created.
  const std::string& path() const { return path_; }
  // path()/relative
  std::string File(const std::string& relative) const { return path_ + "/" + relative; }
  // Creates path()/relative (one level); true on success or if it exists.
  bool MakeDir(const std::string& relative) const {
    struct stat st;
    const std::string p = File(relative);
    return mkdir(p.c_str(), 0755) == 0 || (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
  }

 private:
  std::string path_;
};

}  // namespace clmae::testing
