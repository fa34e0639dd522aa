#pragma once

// What Subprocess::Spawn() prepares before fork(): the program's path, argv
// and environment as NUL-terminated strings, so the child between fork and
// exec only makes async-signal-safe calls (no allocation, no PATH search).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace clmae::process_internal {

struct ExecPlan {
  std::string path;               // the file handed to execve()
  std::vector<std::string> argv;  // as given
  std::vector<std::string> envp;  // "NAME=value", inherited then overridden
};

// Builds the plan for running `argv` with `base_env` (an environ-style
// array, may be null) plus `overrides` (later ones win). argv[0] without a
// '/' is looked up on the resulting PATH (default "/usr/local/bin:/usr/bin:
// /bin") like execvp() does. Errors: INVALID_ARGUMENT for an empty argv, an
// empty program, a variable name that is empty or holds '=', or a NUL inside
// any string; NOT_FOUND when no PATH entry holds the program.
absl::StatusOr<ExecPlan> MakeExecPlan(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& overrides, const char* const* base_env);

// A null-terminated array of pointers into `strings`, for execve(). Valid
// while `strings` is alive and unchanged.
std::vector<char*> ToCStringArray(std::vector<std::string>& strings);

}  // namespace clmae::process_internal
