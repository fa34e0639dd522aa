#pragma once

// The command line of every clmae executable (Abseil flags), parsed one way:
// `--flag-name` and `--flag_name` alike, exit 2 (kExitUsage) with a message
// for an unknown flag, a bad value or a stray argument; plus small parsers
// the main.cc files share.

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

// Parses the command line: NormaliseFlagNames, CheckFlags, then
// absl::ParseCommandLine (which handles --help and friends; after a help
// request the process exits with 0, where Abseil alone exits 1). A usage error
// prints "<program>: <why>" to stderr and exits with kExitUsage; so do more
// than `max_positional` positional arguments. Returns the positional
// arguments, argv[0] excluded.
std::vector<std::string> ParseCommandLineOrExit(int argc, char** argv, absl::string_view program,
                                                size_t max_positional = 0);

// "29500-29999" -> {29500, 29999}. INVALID_ARGUMENT (naming `flag`) unless
// both ends are ports (1..65535) and min <= max.
absl::StatusOr<std::pair<int, int>> ParsePortRange(absl::string_view text, absl::string_view flag);

}  // namespace clmae
