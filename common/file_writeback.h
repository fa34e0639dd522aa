#pragma once

// Early writeback for files that end in an fsync (checkpoint uploads and
// downloads): every few MiB the kernel is asked to start writing the bytes
// just written, without waiting, so the disk works while the network does
// and the final fsync has little left. Header-only (the coordinator's domain
// uses it without linking services/).

#include <fcntl.h>

#include <cstdint>

namespace clmae {

// Tracks how much of a file written front to back has been handed to
// writeback. Not thread-safe.
class WritebackKicker {
 public:
  static constexpr int64_t kStrideBytes = int64_t{8} << 20;

  // `written` bytes of `fd` are now written (from offset 0).
  void Written(int fd, int64_t written) {
    if (written - kicked_ < kStrideBytes) return;
#ifdef __linux__
    // Best effort: an error here surfaces in the final fsync.
    sync_file_range(fd, kicked_, written - kicked_, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
#endif
    kicked_ = written;
  }

 private:
  int64_t kicked_ = 0;
};

}  // namespace clmae
