// clmaectl: the command-line client of the coordinator. This file is the
// process: argv, the environment and the terminal; everything else is in
// clmae_ctl (clmaectl.h).

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "services/clmaectl/clmaectl.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const clmae::ctl::EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  const bool tty = isatty(STDOUT_FILENO) == 1;
  int width = 0;
  winsize size{};
  if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) width = size.ws_col;
  std::ios::sync_with_stdio(false);
  clmae::ctl::Terminal terminal{std::cout, std::cerr, tty, width};
  terminal.err_is_tty = isatty(STDERR_FILENO) == 1;
  const int code = clmae::ctl::RunClmaectl(args, env, clmae::ctl::MakeCoordinatorStub, terminal);
  std::cout.flush();
  return code;
}
