#include "common/command_line.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/exit_codes.h"

namespace clmae {

std::vector<char*> NormaliseFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  std::vector<char*> out;
  bool flags_done = false;
  for (std::string& arg : storage) {
    if (arg == "--") flags_done = true;
    if (!flags_done && arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    out.push_back(arg.data());
  }
  return out;
}

namespace {

// Abseil's usage flags are not in the flag registry; absl::ParseCommandLine
// handles them (prints the help and exits). The first six ask for help.
constexpr absl::string_view kUsageFlags[] = {"help",   "helpfull",  "helpshort", "helppackage",
                                             "helpon", "helpmatch", "version",   "only_check_args"};
constexpr size_t kHelpFlags = 6;

// Whether `args` (before `--`) ask for help.
bool AsksForHelp(const std::vector<char*>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    const absl::string_view name = arg.substr(0, arg.find('='));
    if (std::find(std::begin(kUsageFlags), std::begin(kUsageFlags) + kHelpFlags, name) !=
        std::begin(kUsageFlags) + kHelpFlags) {
      return true;
    }
  }
  return false;
}

// Abseil (20220623) exits with status 1 after printing the help it was asked
// for; a help request is not an error, and scripts and shells expect 0, so
// this handler, registered only when help was asked for, ends the process
// with 0 once the help is out.
void ExitZeroAfterHelp() {
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace

absl::Status CheckFlags(const std::vector<char*>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // a positional argument
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    if (std::find(std::begin(kUsageFlags), std::end(kUsageFlags), name) != std::end(kUsageFlags)) {
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      // --nofoo for a boolean --foo.
      absl::CommandLineFlag* positive = absl::FindCommandLineFlag(name.substr(2));
      if (positive != nullptr && positive->IsOfType<bool>() && eq == absl::string_view::npos) {
        continue;
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, "; run with --help to list the flags"));
    }
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    // Parsing sets the flag; absl::ParseCommandLine sets it again to the same.
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value, ": ", error,
                                                     " (default: ", flag->DefaultValue(), ")"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ParseCommandLineOrExit(int argc, char** argv, absl::string_view program,
                                                size_t max_positional) {
  // --help lists the flags of this project's files. Abseil's default lists
  // those of files named like the program, and no main.cc here is.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  // "Flags from services/coordinator_main.cc", not the build folder's
  // relative path to it ("../services/...").
  usage.normalize_filename = [](absl::string_view file) {
    while (absl::ConsumePrefix(&file, "../") || absl::ConsumePrefix(&file, "./")) {
    }
    return std::string(file);
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = NormaliseFlagNames(argc, argv, storage);
  if (absl::Status flags = CheckFlags(args); !flags.ok()) {
    std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(program.size()), program.data(),
                 static_cast<int>(flags.message().size()), flags.message().data());
    std::exit(kExitUsage);
  }
  if (AsksForHelp(args)) std::atexit(ExitZeroAfterHelp);
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  std::vector<std::string> positional(rest.begin() + (rest.empty() ? 0 : 1), rest.end());
  if (positional.size() > max_positional) {
    std::fprintf(stderr, "%.*s: unexpected argument '%s'; run with --help\n",
                 static_cast<int>(program.size()), program.data(),
                 positional[max_positional].c_str());
    std::exit(kExitUsage);
  }
  return positional;
}

absl::StatusOr<std::pair<int, int>> ParsePortRange(absl::string_view text, absl::string_view flag) {
  std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  int lo = 0;
  int hi = 0;
  if (ends.size() != 2 || !absl::SimpleAtoi(ends[0], &lo) || !absl::SimpleAtoi(ends[1], &hi) ||
      lo < 1 || hi > 65535 || lo > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", text,
                     ": expected MIN-MAX with 1 <= MIN <= MAX <= 65535 (e.g. 29500-29999)"));
  }
  return std::make_pair(lo, hi);
}

}  // namespace clmae
