#include "worker/engine/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace clmae {

absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  const std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "creating folder", dir.string());

  std::string tmp = absl::StrCat(path, ".tmp-XXXXXX");
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return ErrnoStatus(errno, "creating temporary file for", path);
  auto fail = [&](int err, absl::string_view what) {
    close(fd);
    unlink(tmp.c_str());
    return ErrnoStatus(err, what, path);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "writing");
    }
    done += static_cast<size_t>(n);
  }
  if (fchmod(fd, 0644) != 0) return fail(errno, "setting mode of");
  if (fsync(fd) != 0) return fail(errno, "syncing");
  if (close(fd) != 0) {
    unlink(tmp.c_str());
    return ErrnoStatus(errno, "closing", path);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoStatus(err, "renaming into", path);
  }
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus(errno ? errno : ENOENT, "opening", path);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return ErrnoStatus(errno, "reading", path);
  return std::move(out).str();
}

}  // namespace clmae
