#pragma once

// clmaectl's hand-written subcommand parser. Abseil flags are process-wide
// globals, awkward for per-command flags and untestable in-process, so the
// command line is parsed here into the plain structs of ctl_options.h.
// docs/conventions.md keeps flag parsing in main.cc; this departs so that the
// parsing, which is most of what a CLI is, is tested like any other code:
// main.cc still is the only place that reads argv and the environment.
//
// Syntax: `clmaectl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]`. Flags go
// anywhere after the program name, as `--flag value` or `--flag=value`
// (`-o json`, `-f FILE` for the short ones); `--` ends the flags. A flag
// given twice keeps the last value, except the repeatable ones (`--label`).

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/clmaectl/ctl_options.h"

namespace clmae::ctl {

// Reads an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// One flag of a command, or a global one.
struct FlagSpec {
  absl::string_view name;        // long name, without "--"
  char short_name = 0;           // `-x`; 0: none
  absl::string_view value_name;  // empty: a switch that takes no value
  absl::string_view help;
  bool repeatable = false;
};

// The arguments of one command, split but not interpreted.
struct ParsedArgs {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;  // long name -> value ("" for switches)

  bool Has(absl::string_view name) const;
  // The last value given for `name`, or "" when it was not given.
  std::string Last(absl::string_view name) const;
  // Every value given for `name`, in order.
  std::vector<std::string> All(absl::string_view name) const;
};

// A command: what `clmaectl help` lists and how its arguments become options.
// Issue 5's `checkpoints` and `download` are added as entries here.
struct CommandSpec {
  absl::string_view name;
  absl::string_view synopsis;  // after "clmaectl NAME "
  absl::string_view summary;   // one line for the overview
  absl::string_view details;   // paragraphs for `clmaectl NAME --help`
  std::vector<FlagSpec> flags;
  // INVALID_ARGUMENT (a usage error) for missing or malformed arguments.
  std::function<absl::StatusOr<CommandOptions>(const ParsedArgs&)> build;
};

// Every command, in the order `clmaectl help` lists them.
const std::vector<CommandSpec>& Commands();

// The flags every command accepts.
const std::vector<FlagSpec>& GlobalFlags();

// The command named `name`, or nullptr.
const CommandSpec* FindCommand(absl::string_view name);

// Parses `args` (argv without the program name). Environment variables
// (CLMAE_ADDRESS, CLMAE_TOKEN, CLMAE_TLS_CA, CLMAE_TLS_CERT, CLMAE_TLS_KEY,
// CLMAE_TLS_SERVER_NAME) fill the connection options that flags do not.
// INVALID_ARGUMENT is a usage error: its message says what is wrong and
// where to read the usage (`clmaectl help`, `clmaectl CMD --help`).
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const EnvLookup& env);

}  // namespace clmae::ctl
