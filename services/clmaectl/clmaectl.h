#pragma once

// The clmaectl program without the process around it: parse the command
// line, print help, connect, run the command. main.cc supplies argv, the
// environment, the terminal and the real channel; tests supply their own.

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "services/clmaectl/command_line.h"
#include "services/grpc_client.h"

namespace clmae::ctl {

// Makes the stub for the coordinator the options name. Errors (a TLS file
// that cannot be read, ...) are reported like a usage error's.
using StubFactory = std::function<absl::StatusOr<std::unique_ptr<v1::Coordinator::StubInterface>>(
    const ClientOptions&)>;

// Where clmaectl runs.
struct Terminal {
  std::ostream& out;
  std::ostream& err;
  bool out_is_tty = false;
  int width = 0;  // columns; 0 unknown
  // The current time, for ages ("5m ago").
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Whether `err` is a terminal (progress bars).
  bool err_is_tty = false;
};

// Runs `clmaectl ARGS...` (`args` without the program name) and returns the
// exit code (error_report.h). The stub is made only for a command that calls
// the coordinator, never for help or a usage error; making it does not
// connect (channels connect on their first call).
int RunClmaectl(const std::vector<std::string>& args, const EnvLookup& env,
                const StubFactory& make_stub, const Terminal& terminal);

// The overview (`clmaectl help`): commands, global flags, environment, exit
// codes.
void PrintOverview(std::ostream& out);

// One command's help (`clmaectl CMD --help`).
void PrintCommandHelp(const CommandSpec& command, std::ostream& out);

// The production stub factory: MakeClientChannel + Coordinator::NewStub.
absl::StatusOr<std::unique_ptr<v1::Coordinator::StubInterface>> MakeCoordinatorStub(
    const ClientOptions& options);

}  // namespace clmae::ctl
