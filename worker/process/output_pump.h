#pragma once

// Turns a child's stdout/stderr pipes into whole lines for a callback, on a
// thread of its own, so a parent can prefix, route or collect them.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// Which of the child's streams a line came from.
enum class OutputStream { kStdout, kStderr };

// Receives one line, without its trailing '\n'. A last line without a '\n'
// is delivered as is; a line longer than OutputPump::kMaxLineBytes arrives
// in pieces of that size. Called on the pump's thread, never concurrently
// for one pump; callbacks shared by several pumps must synchronize.
using LineCallback = std::function<void(OutputStream stream, absl::string_view line)>;

// Reads two pipe read ends until end of file or Finish(), delivering lines.
// Thread-compatible: Finish() and the destructor are meant for the owner's
// thread.
class OutputPump {
 public:
  static constexpr std::size_t kMaxLineBytes = 64 * 1024;

  // Takes ownership of `stdout_fd` and `stderr_fd` (pipe read ends; -1 for
  // none) and starts the thread. Errors: INTERNAL when a descriptor cannot
  // be set up (the descriptors are closed then too), RESOURCE_EXHAUSTED when
  // no thread can be started.
  static absl::StatusOr<std::unique_ptr<OutputPump>> Start(int stdout_fd, int stderr_fd,
                                                           LineCallback on_line);

  OutputPump(const OutputPump&) = delete;
  OutputPump& operator=(const OutputPump&) = delete;

  // Finish() then closes the descriptors.
  ~OutputPump();

  // For a writer that has exited: delivers everything already in the pipes
  // (and any partial last line), then stops the thread, without waiting for
  // end of file (a grandchild that inherited the pipe may hold it open).
  // Returns once the callback will not be called again. Idempotent.
  void Finish();

 private:
  OutputPump(int stdout_fd, int stderr_fd, int wake_fd, LineCallback on_line);

  void Run();
  // Reads what `fd` has now; returns false at end of file or on error.
  bool ReadAvailable(int index);
  void EmitLines(int index, bool flush_partial);

  int fds_[2];
  std::string pending_[2];
  int wake_fd_;  // eventfd: Finish() was called
  LineCallback on_line_;
  std::thread thread_;
};

}  // namespace clmae
