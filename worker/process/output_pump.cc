#include "worker/process/output_pump.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace clmae {
namespace {

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

OutputStream StreamOf(int index) {
  return index == 0 ? OutputStream::kStdout : OutputStream::kStderr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OutputPump>> OutputPump::Start(int stdout_fd, int stderr_fd,
                                                              LineCallback on_line) {
  int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int err = wake_fd < 0 ? errno : 0;
  for (int fd : {stdout_fd, stderr_fd}) {
    if (err == 0 && fd >= 0) {
      int flags = fcntl(fd, F_GETFL);
      if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) err = errno;
    }
  }
  if (err != 0) {
    CloseIfOpen(wake_fd);
    CloseIfOpen(stdout_fd);
    CloseIfOpen(stderr_fd);
    return absl::InternalError(absl::StrCat("setting up the output pipes: ", strerror(err)));
  }
  std::unique_ptr<OutputPump> pump(
      new OutputPump(stdout_fd, stderr_fd, wake_fd, std::move(on_line)));
  try {
    pump->thread_ = std::thread([p = pump.get()] { p->Run(); });
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("starting the output thread: ", e.what()));
  }
  return pump;
}

OutputPump::OutputPump(int stdout_fd, int stderr_fd, int wake_fd, LineCallback on_line)
    : fds_{stdout_fd, stderr_fd}, wake_fd_(wake_fd), on_line_(std::move(on_line)) {}

OutputPump::~OutputPump() {
  Finish();
  CloseIfOpen(fds_[0]);
  CloseIfOpen(fds_[1]);
  CloseIfOpen(wake_fd_);
}

void OutputPump::Finish() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  // The eventfd counter cannot overflow from one write; EINTR cannot happen
  // on a non-blocking eventfd.
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
}

void OutputPump::Run() {
  while (fds_[0] >= 0 || fds_[1] >= 0) {
    pollfd pfds[3];
    int n = 0;
    int index_of[2] = {-1, -1};
    for (int i = 0; i < 2; ++i) {
      if (fds_[i] < 0) continue;
      index_of[i] = n;
      pfds[n++] = pollfd{fds_[i], POLLIN, 0};
    }
    const int wake_slot = n;
    pfds[n++] = pollfd{wake_fd_, POLLIN, 0};
    if (poll(pfds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfds[wake_slot].revents != 0) {
      // The writer is gone: take what the pipes hold now and stop.
      for (int i = 0; i < 2; ++i) {
        if (fds_[i] >= 0) ReadAvailable(i);
      }
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (index_of[i] < 0 || pfds[index_of[i]].revents == 0) continue;
      if (!ReadAvailable(i)) {
        EmitLines(i, /*flush_partial=*/true);
        CloseIfOpen(fds_[i]);
      }
    }
  }
  for (int i = 0; i < 2; ++i) EmitLines(i, /*flush_partial=*/true);
}

bool OutputPump::ReadAvailable(int index) {
  char buffer[16 * 1024];
  for (;;) {
    ssize_t got = read(fds_[index], buffer, sizeof(buffer));
    if (got > 0) {
      pending_[index].append(buffer, static_cast<std::size_t>(got));
      EmitLines(index, /*flush_partial=*/false);
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // end of file, or an error that ends the stream
  }
}

void OutputPump::EmitLines(int index, bool flush_partial) {
  std::string& pending = pending_[index];
  std::size_t start = 0;
  for (;;) {
    std::size_t newline = pending.find('\n', start);
    if (newline == std::string::npos) break;
    absl::string_view line(pending.data() + start, newline - start);
    while (line.size() > kMaxLineBytes) {
      on_line_(StreamOf(index), line.substr(0, kMaxLineBytes));
      line.remove_prefix(kMaxLineBytes);
    }
    on_line_(StreamOf(index), line);
    start = newline + 1;
  }
  // An unterminated tail: cut it when too long, or deliver it at the end.
  while (pending.size() - start > kMaxLineBytes || (flush_partial && pending.size() > start)) {
    std::size_t size = std::min(pending.size() - start, kMaxLineBytes);
    on_line_(StreamOf(index), absl::string_view(pending.data() + start, size));
    start += size;
  }
  pending.erase(0, start);
}

}  // namespace clmae
