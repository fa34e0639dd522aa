#include "services/clmaectl/clmaectl.h"

#include <algorithm>
#include <variant>

#include "absl/strings/str_cat.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/error_report.h"
#include "services/clmaectl/text_table.h"

namespace clmae::ctl {
namespace {

void PrintFlags(const std::vector<FlagSpec>& flags, std::ostream& out) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const FlagSpec& flag : flags) {
    std::string names = flag.short_name != 0
                            ? absl::StrCat("-", std::string(1, flag.short_name), ", --", flag.name)
                            : absl::StrCat("    --", flag.name);
    if (!flag.value_name.empty()) absl::StrAppend(&names, " ", flag.value_name);
    rows.emplace_back(std::move(names), std::string(flag.help));
  }
  int width = 0;
  for (const auto& [names, help] : rows) width = std::max(width, DisplayWidth(names));
  for (const auto& [names, help] : rows) {
    out << "  " << names << std::string(width - DisplayWidth(names) + 2, ' ') << help << '\n';
  }
}

}  // namespace

void PrintOverview(std::ostream& out) {
  out << "clmaectl: the command-line client of the CL-MAE training service\n\n"
         "Usage: clmaectl [FLAGS] COMMAND [ARGS] [FLAGS]\n\n"
         "Commands:\n";
  size_t width = 0;
  for (const CommandSpec& command : Commands()) width = std::max(width, command.name.size());
  for (const CommandSpec& command : Commands()) {
    out << "  " << command.name << std::string(width - command.name.size() + 2, ' ')
        << command.summary << '\n';
  }
  out << "\nFlags (any command):\n";
  PrintFlags(GlobalFlags(), out);
  out << "\nFlags take their value as --flag VALUE or --flag=VALUE.\n"
         "\nExit codes:\n"
         "  0  success (watch: every job SUCCEEDED)\n"
         "  1  the request failed: an invalid job spec (checked before sending), an error\n"
         "     of the coordinator, or (watch) a job that FAILED or was CANCELLED\n"
         "  2  usage error: unknown command or flag, missing or malformed argument\n"
         "  3  the coordinator cannot be reached or did not answer in time\n"
         "  4  not found: no such job (or checkpoint)\n"
         "  5  not authorized: token missing or wrong, or not allowed (another user's job, an "
         "operator command)\n"
         "\nRun 'clmaectl COMMAND --help' for a command's flags.\n";
}

void PrintCommandHelp(const CommandSpec& command, std::ostream& out) {
  out << "Usage: clmaectl " << command.name;
  if (!command.synopsis.empty()) out << ' ' << command.synopsis;
  out << "\n\n" << command.details << '\n';
  if (!command.flags.empty()) {
    out << "\nFlags:\n";
    PrintFlags(command.flags, out);
  }
  bool own_o = false;  // `download -o PATH`
  for (const FlagSpec& flag : command.flags) own_o = own_o || flag.short_name == 'o';
  out << (own_o ? "\nGlobal flags: " : "\nGlobal flags: -o table|json|yaml, ")
      << "--address, --token, --tls-ca, --tls-cert,\n"
         "--tls-key, --tls-server-name, --timeout (see 'clmaectl help').\n";
}

int RunClmaectl(const std::vector<std::string>& args, const EnvLookup& env,
                const StubFactory& make_stub, const Terminal& terminal) {
  if (args.empty()) {
    PrintOverview(terminal.err);
    return kExitUsage;
  }
  absl::StatusOr<CommandLine> line = ParseCommandLine(args, env);
  if (!line.ok()) {
    terminal.err << "error: " << line.status().message() << '\n';
    return kExitUsage;
  }
  if (const auto* help = std::get_if<HelpCommand>(&line->command)) {
    const CommandSpec* command = help->command.empty() ? nullptr : FindCommand(help->command);
    if (!help->command.empty() && command == nullptr) {
      terminal.err << "error: unknown command '" << help->command << "' (see 'clmaectl help')\n";
      return kExitUsage;
    }
    if (command == nullptr || command->name == "help") {
      PrintOverview(terminal.out);
    } else {
      PrintCommandHelp(*command, terminal.out);
    }
    return kExitOk;
  }

  absl::StatusOr<std::unique_ptr<v1::Coordinator::StubInterface>> stub =
      make_stub(line->global.client);
  if (!stub.ok()) {
    terminal.err << "error: cannot set up the connection to " << line->global.client.address << ": "
                 << stub.status().message() << '\n';
    return kExitUsage;
  }
  const CommandEnv command_env{.global = line->global,
                               .stub = **stub,
                               .out = terminal.out,
                               .err = terminal.err,
                               .out_is_tty = terminal.out_is_tty,
                               .err_is_tty = terminal.err_is_tty,
                               .terminal_width = terminal.width,
                               .clock = terminal.clock};
  return std::visit(
      [&command_env](const auto& options) -> int {
        using T = std::decay_t<decltype(options)>;
        if constexpr (std::is_same_v<T, SubmitOptions>) return RunSubmit(options, command_env);
        if constexpr (std::is_same_v<T, GetOptions>) return RunGet(options, command_env);
        if constexpr (std::is_same_v<T, ListOptions>) return RunList(options, command_env);
        if constexpr (std::is_same_v<T, WatchOptions>) return RunWatch(options, command_env);
        if constexpr (std::is_same_v<T, CancelOptions>) return RunCancel(options, command_env);
        if constexpr (std::is_same_v<T, WorkersOptions>) return RunWorkers(options, command_env);
        if constexpr (std::is_same_v<T, DrainOptions>) return RunDrain(options, command_env);
        if constexpr (std::is_same_v<T, CheckpointsOptions>) {
          return RunCheckpoints(options, command_env);
        }
        if constexpr (std::is_same_v<T, DownloadCheckpointOptions>) {
          return RunDownload(options, command_env);
        }
        return kExitUsage;  // HelpCommand, handled above
      },
      line->command);
}

absl::StatusOr<std::unique_ptr<v1::Coordinator::StubInterface>> MakeCoordinatorStub(
    const ClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeClientChannel(options);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<v1::Coordinator::StubInterface>(v1::Coordinator::NewStub(*channel));
}

}  // namespace clmae::ctl
