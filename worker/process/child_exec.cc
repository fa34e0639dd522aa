#include "worker/process/child_exec.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace clmae::process_internal {
namespace {

[[noreturn]] void Fail(const ChildSetup& setup, int stage) {
  ChildError report{stage, errno};
  // One write of 8 bytes to a pipe is atomic; nothing to do if it fails.
  (void)!write(setup.error_fd, &report, sizeof(report));
  _exit(127);
}

}  // namespace

// Async-signal-safe calls only (prctl() and the raw close_range syscall are
// plain system calls).
[[noreturn]] void RunChild(const ChildSetup& setup) {
  if (setup.new_process_group) setpgid(0, 0);
  if (setup.kill_on_parent_death) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The parent may have died before prctl(): then nobody will signal us.
    if (getppid() != setup.parent) _exit(1);
  }
  if (setup.stdout_fd >= 0 && dup2(setup.stdout_fd, STDOUT_FILENO) < 0) Fail(setup, kStageDup);
  if (setup.stderr_fd >= 0 && dup2(setup.stderr_fd, STDERR_FILENO) < 0) Fail(setup, kStageDup);
  if (setup.working_dir != nullptr && chdir(setup.working_dir) != 0) Fail(setup, kStageChdir);
    // Descriptors the parent leaked without O_CLOEXEC (sockets of other
    // threads, ...) do not reach the program. Best effort: Linux >= 5.11.
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
  syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
#endif
  // Handlers do not survive exec anyway; reset them now so a signal before
  // exec cannot run the parent's handler here. Also undo the commonly
  // inherited "ignore SIGPIPE".
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction current;
    if (sigaction(sig, nullptr, &current) != 0) continue;
    bool handled = current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
    if (handled || sig == SIGPIPE || sig == SIGXFSZ) {
      struct sigaction dfl;
      memset(&dfl, 0, sizeof(dfl));
      dfl.sa_handler = SIG_DFL;
      sigaction(sig, &dfl, nullptr);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execve(setup.path, setup.argv, setup.envp);
  Fail(setup, kStageExec);
}

}  // namespace clmae::process_internal
