#pragma once

// Command-line helpers for the project's executables (Abseil flags): dashed
// flag names, exit-2 errors for unknown flags and bad values, and small
// parsers and writers that main.cc files share.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// Rewrites `--flag-name[=v]` as `--flag_name[=v]` (Abseil's spelling);
// `storage` owns the strings the returned pointers point into.
std::vector<char*> NormaliseFlagNames(int argc, char** argv, std::vector<std::string>& storage);

// Checks every `--name[=value]` / `--name value` argument (after
// NormaliseFlagNames) against the registered flags before
// absl::ParseCommandLine, which would exit with code 1 on its own.
// INVALID_ARGUMENT names an unknown flag or a value the flag's type refuses
// and says how to get help. Arguments after `--` are not looked at.
absl::Status CheckFlags(const std::vector<char*>& args);

// "29500-29999" -> {29500, 29999}. INVALID_ARGUMENT (naming `flag`) unless
// both ends are ports (1..65535) and min <= max.
absl::StatusOr<std::pair<int, int>> ParsePortRange(absl::string_view text, absl::string_view flag);

// Writes `contents` to `path` atomically: a temporary file in the same
// folder, then rename, so a reader never sees a partial file.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace clmae
