#include "coordinator/task_tokens.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_io.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

constexpr absl::string_view kPrefix = "task";

std::string Message(const TaskKey& task) {
  return absl::StrCat(task.job_id, "\n", task.attempt, "\n", task.rank);
}

absl::Status FileError(const std::string& path, absl::string_view what, int err) {
  const std::string message =
      absl::StrCat("task credential key ", path, ": cannot ", what, ": ", std::strerror(err));
  return err == EACCES || err == EPERM ? absl::PermissionDeniedError(message)
                                       : absl::InternalError(message);
}

// Creates the key file with fresh random bytes, readable by its owner only;
// false when it already exists.
absl::StatusOr<bool> CreateKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    return FileError(path, "create it", errno);
  }
  absl::StatusOr<std::string> key = SecureRandomBytes(TaskTokens::kKeyBytes);
  const bool written = key.ok() &&
                       ::write(fd, key->data(), key->size()) == static_cast<ssize_t>(key->size()) &&
                       ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    return key.ok() ? FileError(path, "write it", err) : key.status();
  }
  return true;
}

}  // namespace

absl::StatusOr<TaskTokens> TaskTokens::Open(const std::string& key_path) {
  RETURN_IF_ERROR(CreateKeyFile(key_path).status());
  absl::StatusOr<std::string> key = ReadFile(key_path);
  if (!key.ok()) return key.status();
  if (key->size() != kKeyBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task credential key ", key_path, " has ", key->size(), " bytes, not ", kKeyBytes,
        "; remove it to have a new one made (running trainers then "
        "lose their credentials and their jobs restart)"));
  }
  return TaskTokens(*std::move(key));
}

std::string TaskTokens::Issue(const TaskKey& task) const {
  return absl::StrCat(kPrefix, ":", task.job_id, ":", task.attempt, ":", task.rank, ":",
                      HmacSha256Hex(key_, Message(task)));
}

absl::StatusOr<TaskKey> TaskTokens::Verify(absl::string_view token) const {
  const std::vector<absl::string_view> fields = absl::StrSplit(token, ':');
  TaskKey task;
  if (fields.size() != 5 || fields[0] != kPrefix || fields[1].empty() ||
      !absl::SimpleAtoi(fields[2], &task.attempt) || !absl::SimpleAtoi(fields[3], &task.rank)) {
    return absl::UnauthenticatedError("unknown bearer token");
  }
  task.job_id = std::string(fields[1]);
  if (!ConstantTimeEqual(HmacSha256Hex(key_, Message(task)), fields[4])) {
    return absl::UnauthenticatedError("unknown bearer token");
  }
  return task;
}

}  // namespace clmae
