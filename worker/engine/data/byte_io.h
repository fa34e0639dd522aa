#pragma once

// Whole-file reads and gzip (de)compression for the data readers. zlib is
// optional at build time; without it the gzip functions fail with
// FAILED_PRECONDITION and GzipAvailable() is false.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// The whole content of `path`. NOT_FOUND names a missing file; other read
// failures are DATA_LOSS naming the path and the system's reason.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Whether this build can read and write gzip (it was built with zlib).
bool GzipAvailable();

// True when `bytes` starts with the gzip magic (1f 8b).
bool LooksGzipped(absl::string_view bytes);

// Inflates gzip data (concatenated members are joined). DATA_LOSS on corrupt or
// truncated input, `what` naming the source in messages; FAILED_PRECONDITION
// when the engine was built without zlib.
absl::StatusOr<std::string> GunzipBytes(absl::string_view gz, absl::string_view what);

// Deflates `bytes` into one gzip member (used by tests and tools that write
// gzip IDX files). FAILED_PRECONDITION without zlib.
absl::StatusOr<std::string> GzipBytes(absl::string_view bytes);

}  // namespace clmae
