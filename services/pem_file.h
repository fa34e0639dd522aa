#pragma once

// Reads a PEM file (certificate, key or CA bundle) for TLS setup, client or
// server side.

#include <string>

#include "absl/status/statusor.h"

namespace clmae {

// The file's bytes. `what` names the file's role in errors ("--tls_cert").
// NOT_FOUND when missing, PERMISSION_DENIED when unreadable,
// INVALID_ARGUMENT when empty or not PEM; every message names the path.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& what);

}  // namespace clmae
