#include "worker/process/signal_catcher.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clmae {
namespace {

// The live catcher's write end; -1 when none. Lock-free, so readable from a
// signal handler.
std::atomic<int> g_write_fd{-1};
static_assert(std::atomic<int>::is_always_lock_free);

void OnSignal(int signo) {
  const int saved_errno = errno;
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signo);
    (void)!write(fd, &byte, 1);
  }
  errno = saved_errno;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SignalCatcher>> SignalCatcher::Install(
    const std::vector<int>& signals) {
  for (int signo : signals) {
    if (signo <= 0 || signo >= NSIG || signo > 255 || signo == SIGKILL || signo == SIGSTOP) {
      return absl::InvalidArgumentError(absl::StrCat("signal ", signo, " cannot be caught"));
    }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("creating the signal pipe: ", strerror(errno)));
  }
  int expected = -1;
  if (!g_write_fd.compare_exchange_strong(expected, fds[1])) {
    close(fds[0]);
    close(fds[1]);
    return absl::FailedPreconditionError("another SignalCatcher is already installed");
  }
  std::unique_ptr<SignalCatcher> catcher(new SignalCatcher(fds[0], fds[1]));
  for (int signo : signals) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = OnSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    struct sigaction previous;
    if (sigaction(signo, &action, &previous) != 0) {
      return absl::InternalError(
          absl::StrCat("installing a handler for signal ", signo, ": ", strerror(errno)));
    }
    catcher->previous_.emplace_back(signo, previous);
  }
  return catcher;
}

SignalCatcher::~SignalCatcher() {
  for (auto it = previous_.rbegin(); it != previous_.rend(); ++it) {
    sigaction(it->first, &it->second, nullptr);
  }
  g_write_fd.store(-1);
  close(read_fd_);
  close(write_fd_);
}

std::vector<int> SignalCatcher::TakePending() {
  std::vector<int> caught;
  unsigned char buffer[64];
  for (;;) {
    ssize_t got = read(read_fd_, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    caught.insert(caught.end(), buffer, buffer + got);
  }
  return caught;
}

}  // namespace clmae
