#pragma once

// Task credentials: the bearer token the coordinator issues to one trainer
// (one rank of one attempt of a job) with its assignment, so that the trainer
// never holds its node's credential. A token is
//
//   task:<job id>:<attempt>:<rank>:<HMAC-SHA256 of those under the key, hex>
//
// so the coordinator checks one without storing it, also after a restart:
// the key lives in a file next to the job store (created once, mode 0600).
// Whether the task still runs is the Coordinator's question
// (Coordinator::VerifyTaskToken), not this class's.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/worker_registry.h"

namespace clmae {

class TaskTokens {
 public:
  // The key in `key_path`, created with 32 random bytes when the file does
  // not exist. INTERNAL / PERMISSION_DENIED name the file when it cannot be
  // read or written; FAILED_PRECONDITION when it is not 32 bytes long.
  static absl::StatusOr<TaskTokens> Open(const std::string& key_path);

  // The token of `task`.
  std::string Issue(const TaskKey& task) const;

  // The task `token` was issued for. UNAUTHENTICATED for anything that is
  // not a token issued under this key (the MAC is compared in constant time).
  absl::StatusOr<TaskKey> Verify(absl::string_view token) const;

  static constexpr size_t kKeyBytes = 32;

 private:
  explicit TaskTokens(std::string key) : key_(std::move(key)) {}

  std::string key_;
};

}  // namespace clmae
