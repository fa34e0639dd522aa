#pragma once

// POSIX file helpers every process shares: an owning file descriptor, errno
// as an absl::Status, durable folder entries, and whole-file reads and
// atomic writes. A write is durable only once its bytes are fsynced and, for
// a new name or a rename, once its folder is fsynced too; every writer here
// does both.

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// An open file descriptor, closed on destruction. Move-only; not
// thread-safe.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Closes the descriptor (if any); the error of close() is ignored, so call
  // Close() where it matters.
  void Reset();
  // Closes the descriptor and reports close()'s error (a deferred write
  // error on some file systems).
  absl::Status Close(const std::string& path);
  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// An absl::Status for errno `err` while doing `what` on `path`, as
// "<what> <path>: <strerror>". Missing files are NOT_FOUND, refused access
// and read-only file systems PERMISSION_DENIED, a full disk or quota
// RESOURCE_EXHAUSTED; the rest follow absl::ErrnoToStatusCode.
absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path);

// The folder part of `path` ("." for a bare name, "/" for a file in /).
std::string DirectoryOf(const std::string& path);

// fsyncs the folder `dir`, which makes the entries created, renamed or
// removed in it durable.
absl::Status SyncDirectory(const std::string& dir);

// Writes `bytes` to `path` atomically and durably: a unique temporary file in
// the same folder (parents created), fsync, rename over `path`, fsync of the
// folder. On failure (RESOURCE_EXHAUSTED for a full disk, PERMISSION_DENIED,
// ...) nothing is left behind and an existing `path` is untouched. Safe to
// call from several threads or processes for the same `path`: the last
// rename wins and every reader sees one whole version.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

// The whole file. NOT_FOUND names the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace clmae
