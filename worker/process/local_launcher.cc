#include "worker/process/local_launcher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "worker/process/exit_status.h"
#include "worker/process/signal_catcher.h"
#include "worker/process/subprocess.h"

namespace clmae {
namespace {

// Serializes whole lines onto the launcher's stdout/stderr, so lines of
// different ranks (and the launcher's own) never interleave mid-line.
class LineWriter {
 public:
  void Write(int fd, absl::string_view prefix, absl::string_view line) {
    std::string text = absl::StrCat(prefix, line, "\n");
    std::lock_guard<std::mutex> lock(mu_);
    absl::string_view rest = text;
    while (!rest.empty()) {
      ssize_t wrote = write(fd, rest.data(), rest.size());
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) return;  // stream closed: drop the line
      rest.remove_prefix(static_cast<std::size_t>(wrote));
    }
  }

 private:
  std::mutex mu_;
};

std::string FormatSeconds(absl::Duration d) {
  return absl::StrFormat("%gs", absl::ToDoubleSeconds(d));
}

absl::Status Validate(const LocalLauncherOptions& options) {
  if (options.nproc < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nproc must be at least 1, got ", options.nproc));
  }
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("no command to run on each rank");
  }
  if (options.master_port < 0 || options.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "master port must be in 0..65535 (0 picks a free one), got ", options.master_port));
  }
  if (options.master_addr.empty()) {
    return absl::InvalidArgumentError("master address must not be empty");
  }
  if (options.grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("grace period must not be negative, got ",
                                                   absl::FormatDuration(options.grace)));
  }
  return absl::OkStatus();
}

int StartupExitCode(const absl::Status& status) {
  if (absl::IsNotFound(status)) return 127;
  // Found but not executable (permissions, or not a program), as a shell says.
  if (absl::IsPermissionDenied(status) || absl::IsFailedPrecondition(status)) return 126;
  return 1;
}

// The ranks of one launch and its shutdown state. A failed rank or a
// caught signal starts the shutdown; the first one decides the exit code.
class Launch {
 public:
  Launch(const LocalLauncherOptions& options, LineWriter& out, SignalCatcher& signals)
      : options_(options), out_(out), signals_(signals) {}

  // Starts every rank; on error stops those already started and returns it.
  absl::Status Start(int master_port) {
    for (int rank = 0; rank < options_.nproc; ++rank) {
      auto child = Subprocess::Spawn(RankSpawnOptions(rank, master_port));
      if (!child.ok()) {
        Say(absl::StrCat("cannot start rank ", rank, ": ", child.status().message()));
        stopping_ = true;
        BeginShutdown(SIGTERM);
        while (Running() > 0) Step();
        return child.status();
      }
      ranks_.push_back(*std::move(child));
      ended_.push_back(false);
    }
    return absl::OkStatus();
  }

  // Runs until every rank has ended; returns the launcher's exit code.
  int Supervise() {
    while (Running() > 0) Step();
    return exit_code_;
  }

 private:
  SpawnOptions RankSpawnOptions(int rank, int master_port) {
    SpawnOptions spawn;
    spawn.argv = options_.argv;
    spawn.env = {{"RANK", absl::StrCat(rank)},
                 {"LOCAL_RANK", absl::StrCat(rank)},
                 {"WORLD_SIZE", absl::StrCat(options_.nproc)},
                 {"LOCAL_WORLD_SIZE", absl::StrCat(options_.nproc)},
                 {"MASTER_ADDR", options_.master_addr},
                 {"MASTER_PORT", absl::StrCat(master_port)}};
    // With other ranks to interleave with, rank 0's lines go through the
    // same line writer (unprefixed), so no line of one rank lands inside a
    // line of another. A single rank keeps the launcher's own streams (a
    // terminal stays a terminal).
    if (options_.nproc > 1) {
      LineWriter& out = out_;
      std::string prefix = rank == 0 ? "" : absl::StrCat("[rank ", rank, "] ");
      spawn.output = LineOutput{[&out, prefix = std::move(prefix)](OutputStream stream,
                                                                   absl::string_view line) {
        out.Write(stream == OutputStream::kStdout ? STDOUT_FILENO : STDERR_FILENO, prefix, line);
      }};
    }
    return spawn;
  }

  int Running() const { return static_cast<int>(std::count(ended_.begin(), ended_.end(), false)); }

  void Say(absl::string_view message) {
    out_.Write(STDERR_FILENO, absl::StrCat(options_.program_name, ": "), message);
  }

  // Sends `signo` to every running rank and starts the grace period.
  void BeginShutdown(int signo) {
    for (std::size_t r = 0; r < ranks_.size(); ++r) {
      if (!ended_[r]) (void)ranks_[r]->Signal(signo);
    }
    if (!kill_deadline_.has_value()) kill_deadline_ = absl::Now() + options_.grace;
  }

  // Waits until a rank ends, a signal arrives or the grace period is over,
  // then acts on what happened.
  void Step() {
    std::vector<pollfd> fds;
    fds.push_back(pollfd{signals_.fd(), POLLIN, 0});
    bool all_have_exit_fds = true;
    for (std::size_t r = 0; r < ranks_.size(); ++r) {
      if (ended_[r]) continue;
      if (ranks_[r]->exit_fd() < 0) all_have_exit_fds = false;
      fds.push_back(pollfd{ranks_[r]->exit_fd(), POLLIN, 0});  // -1 is skipped by poll()
    }
    int64_t timeout_ms = all_have_exit_fds ? -1 : 50;
    if (kill_deadline_.has_value()) {
      int64_t left =
          std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(*kill_deadline_ - absl::Now(),
                                                                    absl::Milliseconds(1))));
      timeout_ms = timeout_ms < 0 ? left : std::min(timeout_ms, left);
    }
    poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(timeout_ms, 1 << 30)));

    for (int signo : signals_.TakePending()) {
      if (!stopping_) {
        stopping_ = true;
        exit_code_ = 128 + signo;
        Say(absl::StrCat("received ", SignalName(signo), "; stopping ", Running(), " rank",
                         Running() == 1 ? "" : "s"));
      }
      BeginShutdown(signo);  // forwarded again on every repeat
    }
    for (std::size_t r = 0; r < ranks_.size(); ++r) {
      if (ended_[r]) continue;
      std::optional<ExitStatus> status = ranks_[r]->TryWait();
      if (!status.has_value()) continue;
      ended_[r] = true;
      if (status->success() || stopping_) continue;
      stopping_ = true;
      exit_code_ = status->ShellCode();
      Say(absl::StrCat("rank ", r, " failed (", status->ToString(), ")",
                       Running() > 0 ? "; stopping the other ranks" : ""));
      BeginShutdown(SIGTERM);
    }
    if (kill_deadline_.has_value() && absl::Now() >= *kill_deadline_) {
      for (std::size_t r = 0; r < ranks_.size(); ++r) {
        if (ended_[r]) continue;
        Say(absl::StrCat("rank ", r, " did not stop within ", FormatSeconds(options_.grace),
                         "; killing it"));
        (void)ranks_[r]->Signal(SIGKILL);
        ranks_[r]->Wait(absl::InfiniteDuration());
        ended_[r] = true;
      }
    }
  }

  const LocalLauncherOptions& options_;
  LineWriter& out_;
  SignalCatcher& signals_;
  std::vector<std::unique_ptr<Subprocess>> ranks_;
  std::vector<bool> ended_;
  std::optional<absl::Time> kill_deadline_;
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace

int RunLocalLauncher(const LocalLauncherOptions& options) {
  LineWriter out;
  auto say = [&](absl::string_view message) {
    out.Write(STDERR_FILENO, absl::StrCat(options.program_name, ": "), message);
  };
  if (absl::Status valid = Validate(options); !valid.ok()) {
    say(valid.message());
    return 2;
  }
  int master_port = options.master_port;
  if (master_port == 0) {
    absl::StatusOr<int> picked = PickFreeLocalPort();
    if (!picked.ok()) {
      say(absl::StrCat("cannot pick a master port: ", picked.status().message()));
      return 1;
    }
    master_port = *picked;
  }
  // Installed before the first rank starts, so no signal is missed.
  auto signals = SignalCatcher::Install({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) {
    say(absl::StrCat("cannot handle signals: ", signals.status().message()));
    return 1;
  }
  Launch launch(options, out, **signals);
  if (absl::Status started = launch.Start(master_port); !started.ok()) {
    return StartupExitCode(started);
  }
  return launch.Supervise();
}

absl::StatusOr<int> PickFreeLocalPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("binding 127.0.0.1:0: ", strerror(err)));
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

}  // namespace clmae
