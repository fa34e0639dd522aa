#pragma once

// For fuzz targets whose parser reads files: one scratch folder per process
// (in /dev/shm when there is one, so nothing touches a disk), written anew for
// every input.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace clmae::fuzz {

// Never freed: the atexit handler that removes it runs after static
// destructors would have.
inline const std::string& ScratchDir() {
  static const std::string* const dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm")
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    const std::filesystem::path d = base / ("clmae-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    auto* path = new std::string(d.string());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return path;
  }();
  return *dir;
}

inline std::string WriteScratch(const std::string& name, const char* data, size_t size) {
  const std::string path = ScratchDir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(data, static_cast<long>(size));
  return path;
}

}  // namespace clmae::fuzz
