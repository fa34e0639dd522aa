#pragma once

// Durable file writes: temp file in the same folder, fsync, rename, fsync of
// the folder. A reader sees the old file or the whole new one, never a part.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// Writes `bytes` to `path` atomically, creating parent folders. On failure
// (RESOURCE_EXHAUSTED for a full disk, PERMISSION_DENIED, ...) nothing is
// left behind and an existing `path` is untouched.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

// The whole file. NOT_FOUND names the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// An absl::Status for errno `err` while doing `what` on `path`.
absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path);

}  // namespace clmae
