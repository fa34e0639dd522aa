#pragma once

// The child's side of Subprocess::Spawn(): what runs between fork() and
// execve(). Everything here is async-signal-safe, because in a
// multithreaded parent the child is a copy of one thread whose other threads
// may have held locks (malloc's among them) at the fork.

#include <sys/types.h>

namespace clmae::process_internal {

// What the child reports through the CLOEXEC pipe when it cannot exec.
enum ChildStage : int { kStageDup = 1, kStageChdir = 2, kStageExec = 3 };
struct ChildError {
  int stage;
  int err;
};

// Everything the child needs, prepared before fork().
struct ChildSetup {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* working_dir;  // null: keep
  int stdout_fd;            // -1: inherit
  int stderr_fd;
  int error_fd;  // write end of the CLOEXEC report pipe
  pid_t parent;
  bool kill_on_parent_death;
  bool new_process_group;
};

// Sets the child up as `setup` says and executes the program; on failure
// writes a ChildError to `setup.error_fd` and exits with 127. Never returns.
[[noreturn]] void RunChild(const ChildSetup& setup);

}  // namespace clmae::process_internal
