#include "services/clmaectl/command_line.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace clmae::ctl {
namespace {

absl::Status UsageError(absl::string_view command, absl::string_view what) {
  const std::string see = command.empty() ? std::string("clmaectl help")
                                          : absl::StrCat("clmaectl ", command, " --help");
  return absl::InvalidArgumentError(absl::StrCat(what, " (see '", see, "')"));
}

const FlagSpec* FindFlag(const std::vector<FlagSpec>& flags, absl::string_view long_name,
                         char short_name) {
  for (const FlagSpec& flag : flags) {
    if (short_name != 0 ? flag.short_name == short_name : flag.name == long_name) return &flag;
  }
  return nullptr;
}

// "30s", "2m", "1m30s" or a plain number of seconds.
absl::StatusOr<absl::Duration> ParseTimeout(const std::string& text) {
  absl::Duration duration;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &duration)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout: '", text, "' is not a duration; give seconds or e.g. 30s, 2m, 1m30s"));
  }
  if (duration <= absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: '", text, "' must be a positive, finite duration"));
  }
  return duration;
}

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "table") return OutputFormat::kTable;
  if (lower == "json") return OutputFormat::kJson;
  if (lower == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(
      absl::StrCat("-o: '", text, "' is not an output format; use table, json or yaml"));
}

// Fills `global` from the environment, then from the global flags in `args`.
absl::Status ApplyGlobalOptions(const ParsedArgs& args, const EnvLookup& env,
                                GlobalOptions& global) {
  struct Source {
    absl::string_view flag;
    const char* env_name;
    std::string* field;
  };
  ClientOptions& client = global.client;
  const Source sources[] = {
      {"address", "CLMAE_ADDRESS", &client.address},
      {"token", "CLMAE_TOKEN", &client.token},
      {"tls-ca", "CLMAE_TLS_CA", &client.tls_ca_file},
      {"tls-cert", "CLMAE_TLS_CERT", &client.tls_cert_file},
      {"tls-key", "CLMAE_TLS_KEY", &client.tls_key_file},
      {"tls-server-name", "CLMAE_TLS_SERVER_NAME", &client.tls_server_name},
  };
  for (const Source& source : sources) {
    if (args.Has(source.flag)) {
      *source.field = args.Last(source.flag);
    } else if (env) {
      std::optional<std::string> value = env(source.env_name);
      if (value.has_value() && !value->empty()) *source.field = *value;
    }
  }
  if (client.address.empty()) {
    return absl::InvalidArgumentError("--address is empty; give the coordinator's host:port");
  }
  if (args.Has("output")) {
    absl::StatusOr<OutputFormat> format = ParseOutputFormat(args.Last("output"));
    if (!format.ok()) return format.status();
    global.output = *format;
  }
  if (args.Has("timeout")) {
    absl::StatusOr<absl::Duration> timeout = ParseTimeout(args.Last("timeout"));
    if (!timeout.ok()) return timeout.status();
    global.timeout = *timeout;
  }
  return absl::OkStatus();
}

}  // namespace

bool ParsedArgs::Has(absl::string_view name) const {
  for (const auto& [flag, value] : flags) {
    if (flag == name) return true;
  }
  return false;
}

std::string ParsedArgs::Last(absl::string_view name) const {
  std::string last;
  for (const auto& [flag, value] : flags) {
    if (flag == name) last = value;
  }
  return last;
}

std::vector<std::string> ParsedArgs::All(absl::string_view name) const {
  std::vector<std::string> all;
  for (const auto& [flag, value] : flags) {
    if (flag == name) all.push_back(value);
  }
  return all;
}

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const EnvLookup& env) {
  const CommandSpec* command = nullptr;
  std::string command_name;
  ParsedArgs parsed;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_long = arg.size() > 2 && arg.starts_with("--");
    const bool is_short = arg.size() >= 2 && arg[0] == '-' && arg[1] != '-';
    if (flags_ended || !(is_long || is_short || arg == "--")) {
      if (command == nullptr && command_name.empty()) {
        command_name = arg;
        command = FindCommand(arg);
        if (command == nullptr) {
          return UsageError("", absl::StrCat("unknown command '", arg, "'"));
        }
      } else {
        parsed.positional.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    // --name, --name=value, -x, -x=value, -xVALUE.
    std::string name;
    std::optional<std::string> inline_value;
    char short_name = 0;
    if (is_long) {
      absl::string_view body = absl::string_view(arg).substr(2);
      const size_t eq = body.find('=');
      name = std::string(body.substr(0, eq));
      if (eq != absl::string_view::npos) inline_value = std::string(body.substr(eq + 1));
    } else {
      short_name = arg[1];
      if (arg.size() > 2) inline_value = arg.substr(arg[2] == '=' ? 3 : 2);
    }
    const FlagSpec* flag = nullptr;
    if (command != nullptr) flag = FindFlag(command->flags, name, short_name);
    if (flag == nullptr) flag = FindFlag(GlobalFlags(), name, short_name);
    if (flag == nullptr) {
      return UsageError(command_name,
                        absl::StrCat("unknown flag '", is_long ? "--" + name : arg.substr(0, 2),
                                     "'", command_name.empty() ? "" : " for ", command_name));
    }
    const std::string shown = absl::StrCat("--", flag->name);
    std::string value;
    if (flag->value_name.empty()) {
      if (inline_value.has_value()) {
        return UsageError(command_name, absl::StrCat(shown, " takes no value"));
      }
    } else if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < args.size() && !(args[i + 1].size() > 1 && args[i + 1][0] == '-')) {
      value = args[++i];
    } else {
      return UsageError(command_name,
                        absl::StrCat(shown, " needs a value (", shown, " ", flag->value_name,
                                     " or ", shown, "=", flag->value_name, ")"));
    }
    parsed.flags.emplace_back(std::string(flag->name), std::move(value));
  }

  CommandLine line;
  if (parsed.Has("help")) {
    line.command = HelpCommand{command_name == "help" && !parsed.positional.empty()
                                   ? parsed.positional.front()
                                   : (command_name == "help" ? "" : command_name)};
    return line;
  }
  if (command == nullptr) return UsageError("", "no command given");
  if (absl::Status status = ApplyGlobalOptions(parsed, env, line.global); !status.ok()) {
    return UsageError(command_name, status.message());
  }
  absl::StatusOr<CommandOptions> options = command->build(parsed);
  if (!options.ok()) return UsageError(command_name, options.status().message());
  line.command = *std::move(options);
  return line;
}

}  // namespace clmae::ctl
